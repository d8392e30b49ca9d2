from pwprune.pipeline import aggregate_stage, job_log

with job_log(snakemake.log[0]) as log:
    aggregate_stage(snakemake.params.table, snakemake.output.metrics, snakemake.output.shares, log=log)
