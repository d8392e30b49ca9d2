"""The tidy table -> the summaries (pwprune.summary): effects with intervals and paired tests,
and variants against their bases."""

from __future__ import annotations


def summary_stage(
    metrics_path, md, csv, fairness_csv, intervals_path=None, ranking_csv=None, convergence_path=None, log=print
):
    """The tidy table -> the CE-vs-PW summary (md, csv) with the field's fairness metrics as a
    section of md and in full in fairness_csv (pwprune.summary.field_metrics; single runs with
    the bootstrap intervals of intervals_path, results/bootstrap.csv), then the fairness methods
    ranked by worst-group drop with their paired tests as a section of md and in full in
    ranking_csv (pwprune.summary.ranking, on the test split; the CSV is not written when
    ranking_csv is None), then, with convergence_path (results/convergence.csv), the fine-tuning
    convergence diagnostic (pwprune.convergence.cell_verdicts) as a section, with a note when
    converged cells had annealed their learning rate (pwprune.schedule.summary_note), and its
    warning near the top of md when a cell is not converged. Returns the headline's extra keys:
    {"finetuning_converged": True | False | None (nothing to judge, or no convergence_path)}."""
    import pandas as pd

    from pwprune import convergence, schedule, summary

    metrics = summary.read_table(metrics_path)
    table = summary.summarize(metrics)
    verdicts = None
    if convergence_path is not None:
        curves = convergence.read_curves(convergence_path)
        verdicts = convergence.cell_verdicts(curves)
    top = convergence.summary_warnings(verdicts) if verdicts is not None else []
    # metrics: its numeric environments
    summary.write_summary(table, md, csv, metrics=metrics, warnings_=top)
    intervals = pd.read_csv(intervals_path) if intervals_path is not None else None
    field = summary.field_metrics(metrics, intervals=intervals)
    field.to_csv(fairness_csv, index=False)
    with open(md, "a") as f:
        f.write("\n" + "\n".join(summary.field_section(field)) + "\n")
    ranked = summary.ranking(metrics)
    if ranking_csv is not None:
        ranked.to_csv(ranking_csv, index=False)
    with open(md, "a") as f:
        f.write("\n" + "\n".join(summary.ranking_section(ranked)) + "\n")
    log(f"summary: {len(table)} rows -> {md}, {csv}; {len(field)} fairness metrics -> {fairness_csv}")
    log(f"ranking: {len(ranked)} (method, loss) pairs ranked -> {md}" + (f", {ranking_csv}" if ranking_csv else ""))
    if verdicts is None:
        return {"finetuning_converged": None}
    section = convergence.summary_section(verdicts)
    note = schedule.summary_note(curves, verdicts)
    if note:
        section += ["", *note]
    with open(md, "a") as f:
        f.write("\n" + "\n".join(section) + "\n")
    n_bad = int((verdicts["status"] != convergence.CONVERGED).sum())
    log(f"fine-tuning convergence: {len(verdicts) - n_bad} of {len(verdicts)} cells converged -> {md}")
    for line in top:
        log(line)
    return {"finetuning_converged": convergence.finetuning_converged(verdicts)}


def variant_summary_stage(metrics_path, pairs, descriptions, md, csv, log=print):
    """Variant experiments against their bases (pwprune.summary.compare_variants) -> md, csv."""
    from pwprune import summary

    metrics = summary.read_table(metrics_path)
    table = summary.compare_variants(metrics, [tuple(p) for p in pairs])
    effects = summary.summarize(metrics)
    summary.write_variant_summary(table, effects, md, csv, descriptions, metrics=metrics)
    log(f"variants: {len(table)} rows for {', '.join(v for v, _ in pairs)} -> {md}, {csv}")
