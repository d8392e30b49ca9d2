"""Per-checkpoint metric files -> the tidy table (docs/interfaces.md)."""

from __future__ import annotations

from pwprune.stages.jobs import read_job_metrics, write_csv


def aggregate_stage(table, out_metrics, out_shares, log=print):
    """Dense and pruned rows are repeated under every comparison label that uses them."""
    import pandas as pd

    from pwprune.summary import SHARES_COLUMNS, TABLE_COLUMNS  # the table's one definition

    cache = {}

    def rows(path):
        if path not in cache:
            cache[path] = read_job_metrics(path)
        return cache[path]

    frames, share_frames = [], []
    for run in table:
        ident = {
            "experiment": run["exp"],
            "dataset": run["dataset"],
            "model": run["model"],
            "method": run["method"],
            "loss": run["label"],
            "prune_loss": run["ploss"],
            "finetune_loss": run["floss"],
            "target_reduction": float(run["target"]),
            "seed": int(run["seed"]),
        }
        counted = rows(run["pruned"])["counted_layers"].iloc[0]
        for stage in ("dense", "pruned", "finetuned"):
            df = rows(run[stage]).copy()
            for k, v in ident.items():
                df[k] = v
            if stage == "dense":  # 0 in any count; labelled with the count its comparison uses
                df["counted_layers"] = counted
            frames.append(df)
        sh = pd.read_csv(run["shares"])
        for k in ("experiment", "method", "loss", "target_reduction", "seed"):
            sh[k] = ident[k]
        share_frames.append(sh)
    metrics = pd.concat(frames, ignore_index=True)[list(TABLE_COLUMNS)]
    shares = (
        pd.concat(share_frames, ignore_index=True)[list(SHARES_COLUMNS)]
        if share_frames
        else pd.DataFrame(columns=list(SHARES_COLUMNS))
    )
    write_csv(out_metrics, metrics)
    write_csv(out_shares, shares)
    log(f"{len(metrics)} metric rows from {len(table)} runs; {len(shares)} loss-share rows")
    return metrics
