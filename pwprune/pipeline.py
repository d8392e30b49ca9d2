"""The pipeline's stages as plain functions: each reads its inputs, calls the library and
writes its outputs. Workflow scripts only unpack `snakemake` objects and call these, so every
stage can also be run (and tested) without Snakemake.

Every output is written to a temporary name and moved into place, so a job killed half-way
leaves nothing that a later run could take for a finished result.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import traceback
from pathlib import Path

from pwprune.fileio import atomic_open

# columns of a per-job metrics file; the tidy table's are pwprune.summary.METRICS_COLUMNS
METRIC_COLUMNS = ["stage", "split", "group", "n", "accuracy", "auroc", "degenerate", "params",
                  "macs", "latency_ms", "achieved_reduction", "counted_layers"]


# ---------------------------------------------------------------- job plumbing

@contextlib.contextmanager
def job_log(path):
    """Send the job's stdout/stderr (progress, warnings, tracebacks) to its log file; repeat the
    final error on the real stderr so it also shows in Snakemake's output."""
    if path is None:
        yield print
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    real_err = sys.stderr
    with open(path, "w", buffering=1) as f:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = f
        try:
            yield lambda *a: print(*a, flush=True)
        except BaseException as e:
            traceback.print_exc(file=f)
            print(f"ERROR: {type(e).__name__}: {e}\n(full log: {path})", file=real_err, flush=True)
            raise
        finally:
            sys.stdout, sys.stderr = old


def setup(threads: int, device_name: str, seed: int):
    """Thread count from Snakemake's `threads`, seeds, device. A job never compiles, so it also
    defers torch._dynamo's import (pwprune.train.defer_dynamo; ~1.5 s of every job)."""
    import torch

    from pwprune.train import defer_dynamo, resolve_device, seed_everything

    defer_dynamo()
    torch.set_num_threads(max(1, int(threads)))
    seed_everything(seed)
    return resolve_device(device_name)


def write_json(path, obj):
    with atomic_open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def write_csv(path, df):
    with atomic_open(path, "w") as f:
        df.to_csv(f, index=False)


def write_rows(path, rows, columns):
    """A list of dicts as CSV, written as pandas' to_csv(index=False) writes the same table
    (floats as repr, NaN and None empty, bools True/False), so jobs need not import pandas
    (~0.5 s of every job)."""
    import csv

    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if hasattr(v, "item"):  # numpy scalars
            return cell(v.item())
        return repr(v) if isinstance(v, float) else str(v)

    with atomic_open(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        w.writerows([cell(r[c]) for c in columns] for r in rows)


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def read_metrics(path, required=METRIC_COLUMNS):
    """Read a metrics CSV, refusing one with missing columns (a foreign or truncated file)."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as e:  # empty or garbled file
        raise ValueError(f"{path}: cannot read metrics ({e}); delete it and rerun the job that "
                         "produces it") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: metrics file lacks column(s) {', '.join(missing)}; it was not "
                         "written by this pipeline version: delete it and rerun the job that "
                         "produces it")
    return df


# ---------------------------------------------------------------- data and losses

def load_data(data_dir):
    from pwprune.data import load_prepared

    return load_prepared(data_dir)


def _input_meta(prepared, arch):
    """The data's meta, with the model's own input normalisation when its arch carries one (a
    model started from ImageNet weights expects ImageNet's mean/std, not the data's)."""
    from pwprune.models import input_normalisation

    norm = input_normalisation(arch) if arch is not None else None
    if norm is None:
        return prepared.meta
    return {**prepared.meta, "mean": norm[0], "std": norm[1]}


def train_loader(prepared, batch_size, seed, augment, shuffle=True, arch=None):
    """arch: the model's arch dict (models.arch_dict); its input_mean/input_std, when present,
    replace the data's train mean/std. The same for eval_loader."""
    from pwprune.data import SplitDataset
    from pwprune.train import make_loader

    ds = SplitDataset(prepared.splits["train"], _input_meta(prepared, arch), augment=augment)
    return make_loader(ds, batch_size=batch_size, shuffle=shuffle, seed=seed)


def eval_loader(prepared, split, batch_size, arch=None):
    from pwprune.data import SplitDataset
    from pwprune.train import make_loader

    ds = SplitDataset(prepared.splits[split], _input_meta(prepared, arch), augment=False)
    return make_loader(ds, batch_size=batch_size, shuffle=False, seed=0)


def make_teacher(augment, dense_model, teacher_path, device):
    """Cached dense outputs for non-augmented data (computed once, at dense training); a frozen
    copy of the dense model when augmentation makes every view new."""
    from pwprune.loss import CachedTeacher, FrozenTeacher

    if augment:
        return FrozenTeacher(dense_model.to(device))
    return CachedTeacher(load_tensor(teacher_path).to(device))


def save_tensor(path, tensor):
    import torch

    # through a file object: given a path, torch.save names the zip's records after the
    # (random) temporary file name, so two identical runs would write different bytes
    with atomic_open(path) as f:
        torch.save({"format": "pwprune-teacher", "logits": tensor.cpu()}, f)


def load_tensor(path):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot load teacher outputs ({type(e).__name__}: {e}); delete it "
                         "and rerun the dense training job") from None
    if not isinstance(obj, dict) or obj.get("format") != "pwprune-teacher":
        raise ValueError(f"{path}: not a pwprune teacher-output file; delete it and rerun the dense "
                         "training job")
    return obj["logits"]


# ---------------------------------------------------------------- evaluation

def evaluate(model, prepared, arch, evaluate_cfg, device, stage, achieved_reduction, log=print,
             counted_layers="all"):
    """Per-group rows (accuracy, AUROC, degenerate) on every evaluation split, plus the model's
    size, MACs (every layer's) and measured CPU latency per sample. Returns the rows (dicts with
    METRIC_COLUMNS). `achieved_reduction` is in the pruning's count, which `counted_layers` names
    ("all" or "conv", pwprune.pruning.graph.LAYER_SCOPES). Where the prepared data's groups are its
    classes (meta `groups_are_classes`), a group's AUROC is its class's one-vs-rest AUROC."""
    from pwprune.metrics import count_macs_params, group_metrics, latency_ms, predict
    from pwprune.models import example_input

    bs = evaluate_cfg.get("batch_size", 256)
    example = example_input(arch)
    macs, params = count_macs_params(model, example)
    lat_in = example.repeat(evaluate_cfg.get("latency_batch", 1), 1, 1, 1)
    lat = latency_ms(model, lat_in, repeats=evaluate_cfg.get("latency_repeats", 20), warmup=3)
    rows = []
    # eval_splits already lists "test" first (pwprune.data meta); adding it again doubled the rows
    for split in list(prepared.meta.get("eval_splits") or ["test"]):
        logits, labels, groups = predict(model, eval_loader(prepared, split, bs, arch), device)
        for r in group_metrics(logits, labels, groups, prepared.meta["group_names"],
                               groups_are_classes=bool(prepared.meta.get("groups_are_classes", False))):
            rows.append({"stage": stage, "split": split, **r, "params": params, "macs": macs,
                         "latency_ms": lat, "achieved_reduction": achieved_reduction,
                         "counted_layers": counted_layers})
        overall = next(r for r in rows if r["split"] == split and r["group"] == "all")
        log(f"[{stage}] {split}: accuracy {overall['accuracy']:.4f}, AUROC {overall['auroc']:.4f}, "
            f"{macs / 1e6:.3f} MMACs, {params} params, {lat:.3f} ms/sample")
    return [{c: r[c] for c in METRIC_COLUMNS} for r in rows]


# ---------------------------------------------------------------- stages

def prepare_stage(dataset_cfg, out_dir, log=print):
    from pwprune.data import prepare

    return prepare(dict(dataset_cfg), raw_root=None, out_dir=out_dir, log=log)


def train_dense_stage(data_dir, model_name, loop, evaluate_cfg, seed, device, context, out, log=print,
                      pretrained="none"):
    """out: dict with model, metrics, history, teacher paths. pretrained: "none" | "imagenet"
    (torchvision's ImageNet weights from the local hub cache, new head; models.build_model)."""
    from pwprune.checkpoint import save_checkpoint
    from pwprune.loss import teacher_outputs
    from pwprune.models import arch_dict, build_model

    prepared = load_data(data_dir)
    meta = prepared.meta
    arch = arch_dict(model_name, meta["num_classes"], meta["in_channels"], meta["input_size"], pretrained)
    model = build_model(model_name, meta["num_classes"], meta["in_channels"], meta["input_size"],
                        pretrained=pretrained).to(device)
    log(f"{context}: {model_name} ({'ImageNet weights' if pretrained == 'imagenet' else 'random init'}) "
        f"on {meta['name']} ({len(prepared.splits['train'].y)} training samples)")
    history = _fit(model, prepared, loop, _loss("ce", None), None, seed, device, context, log, arch=arch)
    if history and history[-1].get("diverged"):  # on_divergence: degenerate; no dense, no trial
        raise RuntimeError(f"{context}: the dense model diverged; lower train.lr (now {loop['lr']})")
    rows = evaluate(model, prepared, arch, evaluate_cfg, device, "dense", 0.0, log)
    logits = teacher_outputs(model, train_loader(prepared, evaluate_cfg.get("batch_size", 256), seed,
                                                 augment=False, shuffle=False, arch=arch), device)
    save_tensor(out["teacher"], logits)
    write_json(out["history"], history)
    write_rows(out["metrics"], rows, METRIC_COLUMNS)
    save_checkpoint(out["model"], model, arch, history=[], meta={"stage": "dense", "seed": seed,
                                                               "context": context,
                                                               "pretrained": pretrained})


def _fit(model, prepared, loop, loss_fn, teacher, seed, device, context, log, arch=None):
    from pwprune.train import fit

    loader = train_loader(prepared, loop["batch_size"], seed, augment=loop.get("augment", False),
                          arch=arch)
    return fit(model, loader, epochs=loop["epochs"], lr=loop["lr"],
               weight_decay=loop.get("weight_decay", 0.0), loss_fn=loss_fn, teacher=teacher,
               device=device, optimizer=loop.get("optimizer", "adamw"),
               scheduler=loop.get("scheduler", "cosine"), log=log, context=context,
               on_divergence=loop.get("on_divergence", "raise"),
               milestones=loop.get("milestones"), lr_decay=loop.get("lr_decay", 0.1),
               backbone_lr_scale=loop.get("backbone_lr_scale", 1.0),
               backbone_lr_growth=loop.get("backbone_lr_growth", 1.0))


def _loss(kind, pw):
    from pwprune.loss import make_loss

    return make_loss(kind, **(pw or {}))


def prune_stage(data_dir, dense_path, teacher_path, prune, evaluate_cfg, seed, device, context, out,
                log=print, trajectory_path=None):
    """out: dict with model, metrics, info paths. `prune` holds method, target, tolerance,
    options, loss (and batch_size/augment/pw for data-driven methods). trajectory_path: the
    pruned checkpoint of the next smaller target, whose Taylor trajectory this job continues
    (taylor, schedule "authors"); the checkpoint written here then holds the trajectory too."""
    from pwprune.checkpoint import load_checkpoint, save_checkpoint
    from pwprune.models import example_input
    from pwprune.pruning import prune_to_target

    prepared = load_data(data_dir)
    model, info = load_checkpoint(dense_path, device=device)
    arch = info["arch"]
    kwargs = {}
    if prune["loss"] != "none":
        augment = prune.get("augment", False)
        kwargs = dict(loader=train_loader(prepared, prune["batch_size"], seed, augment, arch=arch),
                      loss_fn=_loss(prune["loss"], prune.get("pw")),
                      teacher=make_teacher(augment, model, teacher_path, device))
        log(f"{context}: pruning loss {kwargs['loss_fn']!r}, teacher {type(kwargs['teacher']).__name__}")
    if trajectory_path is not None:
        from pwprune.pruning.trajectory import load_state

        kwargs["trajectory"] = load_state(trajectory_path)
    t0 = time.perf_counter()
    result = prune_to_target(model, prune["method"], prune["target"], example_input(arch).to(device),
                             device=device, seed=seed, tolerance=prune.get("tolerance", 0.02), log=log,
                             layers=prune.get("layers", "all"),
                             **kwargs, **prune.get("options", {}))
    seconds = time.perf_counter() - t0
    log(f"{context}: achieved {result.achieved_reduction:.4f} MAC reduction (target {prune['target']}) "
        f"in {seconds:.1f} s; {result.note or ''}")
    rows = evaluate(result.model, prepared, arch, evaluate_cfg, device, "pruned",
                    result.achieved_reduction, log, counted_layers=result.counted_layers)
    write_json(out["info"], {"method": prune["method"], "target_reduction": prune["target"],
                             "achieved_reduction": result.achieved_reduction,
                             "within_tolerance": bool(result.within_tolerance), "note": result.note,
                             "macs_before": result.macs_before, "macs_after": result.macs_after,
                             "params_before": result.params_before, "params_after": result.params_after,
                             # achieved_reduction and macs_* are in this count (all: every layer, conv:
                             # full convolutions only); total_*: every layer's MACs, whatever the count
                             "counted_layers": result.counted_layers,
                             "total_macs_before": result.total_macs_before,
                             "total_macs_after": result.total_macs_after,
                             "total_reduction": 1.0 - result.total_macs_after / result.total_macs_before,
                             "seconds": seconds,
                             "continued_from": str(trajectory_path) if trajectory_path else None})
    write_rows(out["metrics"], rows, METRIC_COLUMNS)
    save_checkpoint(out["model"], result.model, arch, history=result.history,
                    meta={"stage": "pruned", "seed": seed, "context": context,
                          "achieved_reduction": result.achieved_reduction},
                    trajectory=result.trajectory)


def finetune_stage(data_dir, pruned_path, pruned_info_path, dense_path, teacher_path, finetune,
                   evaluate_cfg, seed, device, context, out, log=print):
    """out: dict with model, metrics, shares, history paths. `finetune` holds loop, loss, pw."""
    from pwprune.checkpoint import load_checkpoint, save_checkpoint

    prepared = load_data(data_dir)
    model, info = load_checkpoint(pruned_path, device=device)
    pruned_info = json.loads(Path(pruned_info_path).read_text())
    achieved, counted = pruned_info["achieved_reduction"], pruned_info.get("counted_layers", "all")
    loop = finetune["loop"]
    teacher = None
    if finetune["loss"] != "ce":
        augment = loop.get("augment", False)
        # only the frozen (on-the-fly) teacher needs the dense weights; the cached one reads logits
        dense = load_checkpoint(dense_path, device=device)[0] if augment else None
        teacher = make_teacher(augment, dense, teacher_path, device)
    loss_fn = _loss(finetune["loss"], finetune.get("pw"))
    log(f"{context}: fine-tuning loss {loss_fn!r}, teacher {type(teacher).__name__ if teacher else 'none'}")
    history = _fit(model, prepared, loop, loss_fn, teacher, seed, device, context, log, arch=info["arch"])
    shares = [{"epoch": h["epoch"], **s} for h in history for s in h.get("loss_shares", [])]
    diverged = bool(history and history[-1].get("diverged"))
    if diverged:
        # Recorded as a degenerate trial; the non-finite weights are never saved: the checkpoint
        # keeps the pruned weights and says so in its metadata.
        log(f"{context}: fine-tuning diverged; recording the trial as degenerate")
        model, _ = load_checkpoint(pruned_path, device=device)
    rows = evaluate(model, prepared, info["arch"], evaluate_cfg, device, "finetuned", achieved, log,
                    counted_layers=counted)
    if diverged:
        for r in rows:
            r.update(accuracy=math.nan, auroc=math.nan, degenerate=True)
    meta = {"stage": "finetuned", "diverged": diverged}
    write_json(out["history"], history)
    write_rows(out["shares"], shares, ["epoch", "label", "group", "share"])
    write_rows(out["metrics"], rows, METRIC_COLUMNS)
    save_checkpoint(out["model"], model, info["arch"], history=info["history"],
                    meta={**meta, "seed": seed, "context": context, "achieved_reduction": achieved})


def aggregate_stage(table, out_metrics, out_shares, log=print):
    """Per-job metric files -> the tidy table (docs/interfaces.md): dense and pruned rows are
    repeated under every comparison label that uses them."""
    import pandas as pd

    from pwprune.summary import METRICS_COLUMNS, SHARES_COLUMNS  # the table's one definition

    cache = {}

    def rows(path):
        if path not in cache:
            cache[path] = read_metrics(path)
        return cache[path]

    frames, share_frames = [], []
    for run in table:
        ident = {"experiment": run["exp"], "dataset": run["dataset"], "model": run["model"],
                 "method": run["method"], "loss": run["label"], "prune_loss": run["ploss"],
                 "finetune_loss": run["floss"], "target_reduction": float(run["target"]),
                 "seed": int(run["seed"])}
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
    metrics = pd.concat(frames, ignore_index=True)[list(METRICS_COLUMNS)]
    shares = (pd.concat(share_frames, ignore_index=True)[list(SHARES_COLUMNS)] if share_frames
              else pd.DataFrame(columns=list(SHARES_COLUMNS)))
    write_csv(out_metrics, metrics)
    write_csv(out_shares, shares)
    log(f"{len(metrics)} metric rows from {len(table)} runs; {len(shares)} loss-share rows")
    return metrics


def plot_stage(figure, metrics_path, shares_path, experiment, png, pdf, log=print):
    from pwprune import plots, summary

    metrics = summary.read_metrics(metrics_path)
    shares = summary.read_shares(shares_path)
    stem = str(png)[: -len(".png")]
    assert str(pdf) == stem + ".pdf", (png, pdf)
    paths = plots.make_figure(figure, metrics, shares, experiment, stem)
    log(f"wrote {', '.join(map(str, paths))}")


def summary_stage(metrics_path, md, csv, log=print):
    from pwprune import summary

    table = summary.summarize(summary.read_metrics(metrics_path))
    summary.write_summary(table, md, csv)
    log(f"summary: {len(table)} rows -> {md}, {csv}")


def variant_summary_stage(metrics_path, pairs, descriptions, md, csv, log=print):
    """Variant experiments against their bases (pwprune.summary.compare_variants) -> md, csv."""
    from pwprune import summary

    metrics = summary.read_metrics(metrics_path)
    table = summary.compare_variants(metrics, [tuple(p) for p in pairs])
    effects = summary.summarize(metrics)
    summary.write_variant_summary(table, effects, md, csv, descriptions)
    log(f"variants: {len(table)} rows for {', '.join(v for v, _ in pairs)} -> {md}, {csv}")


def variant_figure_stage(metrics_path, variant, base, png, pdf, log=print):
    from pwprune import plots, summary

    stem = str(png)[: -len(".png")]
    assert str(pdf) == stem + ".pdf", (png, pdf)
    paths = plots.variant_comparison(summary.read_metrics(metrics_path), variant, base, stem)
    log(f"wrote {', '.join(map(str, paths))}")
