from pwprune.diagnostics import teacher_diagnostic_stage
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    p = snakemake.params
    teacher_diagnostic_stage(
        snakemake.input.data,
        snakemake.input.teacher,
        p.settings,
        snakemake.wildcards.exp,
        p.seed,
        snakemake.output.csv,
        log=log,
    )
