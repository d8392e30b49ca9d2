"""Every checkpoint's outputs (pwprune.outputs) and the latency files -> the tidy table
(docs/interfaces.md). The per-group metrics are computed here, with numpy, from the outputs the
training, pruning and fine-tuning jobs wrote: an edit of the metric code or of an `evaluate:`
setting reruns this job and the report, never a job that needs a model."""

from __future__ import annotations

from pathlib import Path

from pwprune.stages.jobs import METRIC_COLUMNS, write_csv


def checkpoint_metrics(outputs_path, latency):
    """One checkpoint's rows (METRIC_COLUMNS) from its outputs file and the {folder: latency_ms}
    map of pwprune.stages.latency.read_latency; a folder that no latency file measured is refused
    with the file that should have."""
    from pwprune.metrics import checkpoint_rows
    from pwprune.outputs import read_outputs

    folder = str(Path(outputs_path).parent)
    if folder not in latency:
        raise ValueError(
            f"{folder}: no latency measured for this checkpoint; its seed's latency file "
            f"({Path(folder).parts[0]}/<exp>/seed<n>/latency_<table>.csv) should list it: delete that file and rerun"
        )
    return [{**r, "latency_ms": latency[folder]} for r in checkpoint_rows(read_outputs(outputs_path))]


def history_path(run):
    """A run's fine-tuning history (pwprune.train.fit's list, history.json): its "history" key,
    or the file beside its fine-tuned checkpoint's outputs."""
    return run.get("history") or str(Path(run["finetuned"]).parent / "history.json")


def aggregate_stage(table, latency_files, out_metrics, out_shares, out_convergence=None, log=print):
    """Dense and pruned rows are repeated under every comparison label that uses them. With
    out_convergence, also every run's validation curves (pwprune.convergence.curve_rows of its
    history.json with each epoch's learning rate, pwprune.schedule.with_lr;
    CURVE_COLUMNS_WITH_LR, one row per run x validated epoch x group; a history without "val"
    adds none)."""
    import json

    import pandas as pd

    from pwprune.convergence import curve_rows
    from pwprune.schedule import CURVE_COLUMNS_WITH_LR, with_lr
    from pwprune.stages.latency import read_latency
    from pwprune.summary import SHARES_COLUMNS, TABLE_COLUMNS  # the table's one definition

    latency = read_latency(latency_files)
    cache = {}

    def rows(path):
        if path not in cache:
            cache[path] = pd.DataFrame(checkpoint_metrics(path, latency), columns=METRIC_COLUMNS)
        return cache[path]

    frames, share_frames, curves = [], [], []
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
        if out_convergence is not None:
            with open(history_path(run)) as f:
                history = json.load(f)
            curves += with_lr(curve_rows(history, ident), history)
    metrics = pd.concat(frames, ignore_index=True)[list(TABLE_COLUMNS)]
    shares = (
        pd.concat(share_frames, ignore_index=True)[list(SHARES_COLUMNS)]
        if share_frames
        else pd.DataFrame(columns=list(SHARES_COLUMNS))
    )
    write_csv(out_metrics, metrics)
    write_csv(out_shares, shares)
    log(f"{len(metrics)} metric rows from {len(cache)} outputs files ({len(table)} runs), {len(shares)} share rows")
    if out_convergence is not None:
        write_csv(out_convergence, pd.DataFrame(curves, columns=list(CURVE_COLUMNS_WITH_LR)))
        validated = len(
            {tuple(r[k] for k in ("experiment", "method", "loss", "target_reduction", "seed")) for r in curves}
        )
        log(f"{len(curves)} convergence rows: validation curves of {validated} of {len(table)} fine-tuning runs")
    return metrics
