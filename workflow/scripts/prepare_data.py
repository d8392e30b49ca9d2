from pwprune.stages.jobs import job_log
from pwprune.stages.prepare import prepare_stage

with job_log(snakemake.log[0], exit_when_done=True) as log:
    prepare_stage(snakemake.params.dataset, snakemake.output[0], log=log)
