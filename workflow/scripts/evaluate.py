from pwprune.stages.evaluate import evaluate_stage
from pwprune.stages.inputs import setup
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    p = snakemake.params
    device = setup(snakemake.threads, p.device, 0)
    evaluate_stage(snakemake.input.model, snakemake.input.data, p.evaluate, device, snakemake.output.metrics, log=log)
