from pwprune.stages.figures import plot_stage
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    w = snakemake.wildcards
    plot_stage(
        w.figure,
        snakemake.input.metrics,
        snakemake.input.shares,
        w.exp,
        png=snakemake.output.png,
        pdf=snakemake.output.pdf,
        # rule figure_ablation has no convergence input
        convergence_path=snakemake.input.get("convergence"),
        log=log,
    )
