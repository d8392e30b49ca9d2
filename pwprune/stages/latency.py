"""The checkpoints of one experiment and seed -> their latency per sample, measured in one process
(the one measure that needs the model again; every other metric is computed from the outputs the
checkpoint's own job wrote, pwprune.outputs). Its params are the `evaluate:` latency settings, so
changing one reruns these jobs and the report, never a training, pruning or fine-tuning job."""

from __future__ import annotations

from pathlib import Path

from pwprune.stages.jobs import write_rows

LATENCY_COLUMNS = ["checkpoint", "latency_ms"]


def latency_of(model, example, evaluate_cfg):
    """The model's latency per sample in ms under the `evaluate:` settings (latency_batch,
    latency_repeats, latency_threads), on `example`, a (1, C, H, W) input."""
    from pwprune.inference import latency_ms

    lat_in = example.repeat(evaluate_cfg.get("latency_batch", 1), 1, 1, 1)
    kwargs = {"threads": evaluate_cfg["latency_threads"]} if "latency_threads" in evaluate_cfg else {}
    return latency_ms(model, lat_in, repeats=evaluate_cfg.get("latency_repeats", 20), warmup=3, **kwargs)


def latency_stage(models, evaluate_cfg, device, out, log=print):
    """Every checkpoint file in `models` -> `out`, a CSV of LATENCY_COLUMNS (`checkpoint`: the
    checkpoint's folder, as given). Progress goes to the log, one line per checkpoint."""
    from pwprune.checkpoint import load_checkpoint
    from pwprune.models import example_input

    rows = []
    for i, path in enumerate(models, 1):
        model, info = load_checkpoint(path, device=device)
        lat = latency_of(model, example_input(info["arch"]), evaluate_cfg)
        rows.append({"checkpoint": str(Path(path).parent), "latency_ms": lat})
        log(f"latency {i}/{len(models)}: {Path(path).parent}: {lat:.4f} ms/sample")
    write_rows(out, rows, LATENCY_COLUMNS)
    return rows


def read_latency(paths):
    """Latency files -> {checkpoint folder: latency_ms}; a folder measured twice keeps its first."""
    import csv

    found = {}
    for p in paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                found.setdefault(r["checkpoint"], float(r["latency_ms"]))
    return found
