from pwprune.stages.jobs import job_log
from pwprune.stages.report import variant_summary_stage

with job_log(snakemake.log[0], exit_when_done=True) as log:
    p = snakemake.params
    variant_summary_stage(
        snakemake.input.metrics, p.pairs, p.descriptions, snakemake.output.md, snakemake.output.csv, log=log
    )
