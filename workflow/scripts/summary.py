from pwprune.diagnostics import append_summary
from pwprune.dvc_view import write_headline
from pwprune.stages.jobs import job_log
from pwprune.stages.report import summary_stage

with job_log(snakemake.log[0], exit_when_done=True) as log:
    facts = summary_stage(
        snakemake.input.metrics,
        snakemake.output.md,
        snakemake.output.csv,
        snakemake.output.fairness,
        intervals_path=snakemake.input.intervals,
        ranking_csv=snakemake.output.ranking,
        convergence_path=snakemake.input.convergence,
        log=log,
    )
    append_summary(snakemake.output.md, snakemake.input.diagnostics, snakemake.params.experiments)
    log(f"teacher diagnostics of {', '.join(snakemake.params.experiments)} -> {snakemake.output.md}")
    write_headline(snakemake.output.csv, snakemake.output.headline, extra=facts)
    log(f"headline metrics for DVC -> {snakemake.output.headline}")
