"""Any checkpoint (dense, pruned or fine-tuned) + the `evaluate` settings -> its per-group
metrics: accuracy, AUROC, degenerate flag per group and split, plus size, MACs and latency.

The checkpoint's own meta says which stage wrote it, the MAC reduction its pruning achieved and
in which count (pwprune.pruning.graph.LAYER_SCOPES), and whether its fine-tuning diverged, so a
checkpoint can be re-evaluated by path alone (one pulled with DVC included):

    from pwprune.stages.evaluate import evaluate_stage
    evaluate_stage("results/default/seed0/dense/model.pt", "data/prepared/default",
                   {"batch_size": 256}, "cpu", "metrics.csv")
"""

from __future__ import annotations

import math

from pwprune.stages.inputs import eval_loader, load_data
from pwprune.stages.jobs import METRIC_COLUMNS, write_rows


def evaluate(
    model,
    prepared,
    arch,
    evaluate_cfg,
    device,
    stage,
    achieved_reduction,
    log=print,
    counted_layers="all",
    environment="unrecorded",
    predictions=None,
    example=None,
):
    """Per-group rows (accuracy, AUROC, degenerate) on every evaluation split, plus the model's
    size, MACs (every layer's) and measured CPU latency per sample. Returns the rows (dicts with
    METRIC_COLUMNS). `achieved_reduction` is in the pruning's count, which `counted_layers` names
    ("all" or "conv"); `environment`, the one-line numeric environment that made the checkpoint
    (pwprune.environment.environment_id), goes with every row. Where the prepared data's groups are its classes (meta
    `groups_are_classes`), a group's AUROC is its class's one-vs-rest AUROC. `predictions`, a
    dict, receives per split the per-sample `{pred, y, g}` arrays (the bootstrap's input).
    `example`: the (1, C, H, W) input that MACs and latency are measured on (default: the arch's,
    models.example_input). The evaluate stage and pwprune.api.compress both call it."""
    from pwprune.metrics import count_macs_params, group_metrics, latency_ms, predict, predicted_classes
    from pwprune.models import example_input

    bs = evaluate_cfg.get("batch_size", 256)
    example = example_input(arch) if example is None else example
    macs, params = count_macs_params(model, example)
    lat_in = example.repeat(evaluate_cfg.get("latency_batch", 1), 1, 1, 1)
    lat = latency_ms(model, lat_in, repeats=evaluate_cfg.get("latency_repeats", 20), warmup=3)
    rows = []
    # eval_splits already lists "test" first (pwprune.data meta)
    for split in list(prepared.meta.get("eval_splits") or ["test"]):
        logits, labels, groups = predict(model, eval_loader(prepared, split, bs, arch, device), device)
        if predictions is not None:
            predictions[split] = {
                "pred": predicted_classes(logits),
                "y": labels.numpy(),
                "g": groups.numpy(),
                "binary": logits.ndim == 1,  # a single logit, as group_metrics' rates
            }
        for r in group_metrics(
            logits,
            labels,
            groups,
            prepared.meta["group_names"],
            groups_are_classes=bool(prepared.meta.get("groups_are_classes", False)),
        ):
            rows.append(
                {
                    "stage": stage,
                    "split": split,
                    **r,
                    "params": params,
                    "macs": macs,
                    "latency_ms": lat,
                    "achieved_reduction": achieved_reduction,
                    "counted_layers": counted_layers,
                    "environment": environment,
                }
            )
        overall = next(r for r in rows if r["split"] == split and r["group"] == "all")
        log(
            f"[{stage}] {split}: accuracy {overall['accuracy']:.4f}, AUROC {overall['auroc']:.4f}, "
            f"{macs / 1e6:.3f} MMACs, {params} params, {lat:.3f} ms/sample"
        )
    return [{c: r[c] for c in METRIC_COLUMNS} for r in rows]


def evaluate_stage(checkpoint_path, data_dir, evaluate_cfg, device, out, predictions_out=None, log=print):
    """One checkpoint -> its metrics CSV at `out` (METRIC_COLUMNS) and, at `predictions_out`, its
    per-sample predictions (pwprune.predictions; the input of pwprune.bootstrap). A fine-tuned
    checkpoint whose training diverged holds the pruned weights; its rows are marked degenerate,
    accuracy NaN, and its predictions file says it diverged.
    Every row names the numeric environment that made the checkpoint (its meta's `environment`;
    "unrecorded" for a checkpoint from before environments were recorded)."""
    from pwprune.checkpoint import CheckpointError, load_checkpoint
    from pwprune.environment import environment_id

    model, info = load_checkpoint(checkpoint_path, device=device)
    meta = info["meta"]
    missing = [k for k in ("stage", "achieved_reduction") if k not in meta]
    if missing:
        raise CheckpointError(
            f"{checkpoint_path}: its meta lacks {', '.join(missing)}; it was not "
            "written by this pipeline version: delete it and rerun the job that "
            "produces it"
        )
    predictions = {}
    prepared = load_data(data_dir)
    rows = evaluate(
        model,
        prepared,
        info["arch"],
        evaluate_cfg,
        device,
        meta["stage"],
        meta["achieved_reduction"],
        log,
        counted_layers=meta.get("counted_layers", "all"),
        environment=environment_id(meta.get("environment")),
        predictions=predictions,
    )
    if meta.get("diverged"):
        log(f"{checkpoint_path}: its fine-tuning diverged; rows marked degenerate")
        for r in rows:
            r.update(accuracy=math.nan, auroc=math.nan, tpr=math.nan, fpr=math.nan, degenerate=True)
    if predictions_out is not None:
        from pwprune.predictions import write_predictions

        write_predictions(
            predictions_out,
            predictions,
            n_groups=len(prepared.meta["group_names"]),
            diverged=bool(meta.get("diverged")),
        )
    write_rows(out, rows, METRIC_COLUMNS)
    return rows
