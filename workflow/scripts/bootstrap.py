from pwprune.stages.bootstrap import bootstrap_stage
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    bootstrap_stage(snakemake.params.table, snakemake.output.intervals, log=log)
