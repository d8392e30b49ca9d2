from pwprune.stages.evaluate import evaluate_stage
from pwprune.stages.inputs import deterministic_ops, setup
from pwprune.stages.jobs import job_log

with (
    job_log(snakemake.log[0], exit_when_done=True) as log,
    deterministic_ops(f"experiments.{snakemake.wildcards.exp}.deterministic"),
):
    p = snakemake.params
    device = setup(p.numerics, snakemake.threads, p.device, 0, log)
    evaluate_stage(
        snakemake.input.model,
        snakemake.input.data,
        p.evaluate,
        device,
        snakemake.output.metrics,
        log=log,
        batch_size=p.inference["batch_size"],
    )
