from pwprune.pipeline import job_log, prepare_stage

with job_log(snakemake.log[0]) as log:
    prepare_stage(snakemake.params.dataset, snakemake.output[0], log=log)
