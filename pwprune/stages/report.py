"""The tidy table -> the summaries (pwprune.summary): effects with intervals and paired tests,
and variants against their bases."""

from __future__ import annotations


def summary_stage(metrics_path, md, csv, log=print):
    from pwprune import summary

    metrics = summary.read_table(metrics_path)
    table = summary.summarize(metrics)
    summary.write_summary(table, md, csv, metrics=metrics)  # metrics: its numeric environments
    log(f"summary: {len(table)} rows -> {md}, {csv}")


def variant_summary_stage(metrics_path, pairs, descriptions, md, csv, log=print):
    """Variant experiments against their bases (pwprune.summary.compare_variants) -> md, csv."""
    from pwprune import summary

    metrics = summary.read_table(metrics_path)
    table = summary.compare_variants(metrics, [tuple(p) for p in pairs])
    effects = summary.summarize(metrics)
    summary.write_variant_summary(table, effects, md, csv, descriptions, metrics=metrics)
    log(f"variants: {len(table)} rows for {', '.join(v for v, _ in pairs)} -> {md}, {csv}")
