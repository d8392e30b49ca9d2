from pwprune.stages.figures import variant_figure_stage
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    variant_figure_stage(
        snakemake.input.metrics,
        snakemake.wildcards.exp,
        snakemake.params.base,
        png=snakemake.output.png,
        pdf=snakemake.output.pdf,
        log=log,
    )
