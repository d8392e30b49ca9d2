"""Any checkpoint (dense, pruned or fine-tuned) -> its per-group metrics rows (accuracy, AUROC,
rates, degenerate flag per group and split, plus size, MACs and latency) in one process: how a
checkpoint from elsewhere (pulled with DVC, or a user's own) is evaluated by asking for one file,
and what pwprune.api.compress runs in memory.

The grid does not run this per checkpoint: its training, pruning and fine-tuning jobs write each
checkpoint's outputs (pwprune.outputs), the tidy table's metrics are computed from those
(pwprune.stages.aggregate), and latency is measured per seed (pwprune.stages.latency). Both ways
call the same functions, so they give the same rows.

    from pwprune.stages.evaluate import evaluate_stage
    evaluate_stage("results/default/seed0/dense/model.pt", "data/prepared/default",
                   {"latency_repeats": 20}, "cpu", "metrics.csv", batch_size=512)
"""

from __future__ import annotations

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
    example=None,
    batch_size=None,
):
    """Per-group rows (METRIC_COLUMNS) of an in-memory model on every evaluation split, with its
    size, MACs and latency. `batch_size` (default evaluate_cfg's, else 256) is the batch of its
    outputs; `example`: the (1, C, H, W) input that MACs and latency are measured on (default:
    the arch's, models.example_input)."""
    from pwprune.metrics import checkpoint_rows
    from pwprune.models import example_input
    from pwprune.outputs import model_outputs
    from pwprune.stages.latency import latency_of

    bs = batch_size or evaluate_cfg.get("batch_size", 256)
    example = example_input(arch) if example is None else example
    out = model_outputs(model, prepared, arch, bs, device, example)
    out.update(
        stage=stage,
        achieved_reduction=achieved_reduction,
        counted_layers=counted_layers,
        environment=environment,
        diverged=False,
    )
    lat = latency_of(model, example, evaluate_cfg)
    rows = [{**r, "latency_ms": lat} for r in checkpoint_rows(out)]
    _log_rows(rows, out, lat, log)
    return [{c: r[c] for c in METRIC_COLUMNS} for r in rows]


def _log_rows(rows, out, lat, log):
    for split in out["splits"]:
        overall = next(r for r in rows if r["split"] == split and r["group"] == "all")
        log(
            f"[{out['stage']}] {split}: accuracy {overall['accuracy']:.4f}, AUROC {overall['auroc']:.4f}, "
            f"{out['macs'] / 1e6:.3f} MMACs, {out['params']} params, {lat:.3f} ms/sample"
        )


def evaluate_stage(checkpoint_path, data_dir, evaluate_cfg, device, out, log=print, batch_size=None):
    """One checkpoint file -> its metrics CSV at `out` (METRIC_COLUMNS): its outputs as the grid's
    jobs write them (pwprune.outputs.checkpoint_outputs, at `batch_size`: the experiment's
    `inference.batch_size`; default evaluate_cfg's `batch_size`, else 256), their rows
    (pwprune.metrics.checkpoint_rows; a diverged fine-tuning's are degenerate) and its latency.
    Every row names the numeric environment that made the checkpoint."""
    from pwprune.checkpoint import load_checkpoint
    from pwprune.metrics import checkpoint_rows
    from pwprune.models import example_input
    from pwprune.outputs import checkpoint_outputs
    from pwprune.stages.latency import latency_of

    batch_size = batch_size or evaluate_cfg.get("batch_size", 256)
    outputs = checkpoint_outputs(checkpoint_path, data_dir, batch_size, device, log)
    model, info = load_checkpoint(checkpoint_path, device=device)
    lat = latency_of(model, example_input(info["arch"]), evaluate_cfg)
    rows = [{**r, "latency_ms": lat} for r in checkpoint_rows(outputs)]
    if outputs["diverged"]:
        log(f"{checkpoint_path}: its fine-tuning diverged; rows marked degenerate")
    _log_rows(rows, outputs, lat, log)
    write_rows(out, rows, METRIC_COLUMNS)
    return rows
