from pwprune.stages.aggregate import aggregate_stage
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    aggregate_stage(
        snakemake.params.table,
        snakemake.input.latency,
        snakemake.output.metrics,
        snakemake.output.shares,
        out_convergence=snakemake.output.convergence,
        log=log,
    )
