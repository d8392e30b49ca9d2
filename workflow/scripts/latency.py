from pwprune.stages.inputs import deterministic_ops, setup
from pwprune.stages.jobs import job_log
from pwprune.stages.latency import latency_stage

with (
    job_log(snakemake.log[0], exit_when_done=True) as log,
    deterministic_ops(f"experiments.{snakemake.wildcards.exp}.deterministic"),
):
    p = snakemake.params
    device = setup(p.numerics, snakemake.threads, p.device, 0, log)
    latency_stage(snakemake.input.models, p.evaluate, device, snakemake.output.latency, log=log)
