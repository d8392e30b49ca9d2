"""One call for users without a workflow: prune a model to a MAC target, fine-tune it, and see
who pays.

    import pwprune
    result = pwprune.compress(model, train=(x, y, groups), test=(x_test, y_test, groups_test),
                              method="taylor", target=0.5, loss="pw",
                              loss_options={"min_weight": 0.5, "gamma": 1.0}, epochs=5)
    result.model        # pruned (channels physically removed) and fine-tuned
    result.who_pays()   # per group: dense vs final accuracy, drop, drop beyond the overall one

`compress` runs the workflow's own stage code in memory, not a copy of it: the dense model's
teacher outputs (stages.inputs.dense_teacher_logits, make_teacher), the pruning
(stages.prune.prune_model -> pruning.prune_to_target), the fine-tuning
(stages.finetune.finetune_model -> stages.inputs.fit, make_loss / make_ceag_loss) and the per-group
evaluation (stages.evaluate.evaluate -> metrics.group_metrics). With the same model, data and seed it
gives the model and metrics that the prune, fine-tune and evaluate jobs give (tests/test_api.py).

Data: a prepared dataset (its folder or pwprune.data.load_prepared's result, as the workflow
writes it), or per split a pwprune.data.Split, a Batches, a SplitDataset, or a plain `(x, y,
groups)` of numpy arrays or torch tensors: x (N, C, H, W) uint8 images (normalised with the train
split's per-channel mean and std, as the pipeline does) or float inputs (used as given); y and
groups integer ids or strings (strings become names, sorted; names appear in every row).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from pwprune.names import (
    BASELINE_LABELS,
    LAYER_SCOPES,
    LOSS_LABELS,
    METHODS,
    PRECISIONS,
    PRUNE_TOLERANCE,
    TRANSFORMER_SCOPES,
)

# the loss labels compress takes: the workflow's (pwprune.config.phase_losses maps each to the
# pruning-phase and fine-tuning losses, as an experiment's `losses` does)
LOSSES = (*LOSS_LABELS, *BASELINE_LABELS)
# loss_options each fine-tuning loss takes (the PW loss's, CEAG's)
LOSS_OPTIONS = {"ce": (), "ceag": ("epsilon", "dual_lr")}
PW_OPTIONS = ("min_weight", "gamma")
# finetune_options: the rest of a `finetune` loop section (params.yaml; pwprune.train.fit checks the values)
FINETUNE_OPTIONS = (
    "weight_decay",
    "optimizer",
    "scheduler",
    "milestones",
    "lr_decay",
    "backbone_lr_scale",
    "backbone_lr_growth",
    "augment",
    "on_divergence",
)
STAGES = ("dense", "pruned", "finetuned")


@dataclass
class CompressionResult:
    """What compress returns.

    model: the pruned, fine-tuned nn.Module. metrics: one dict per stage (dense, pruned,
    finetuned) x evaluation split x group (each group by name, then "all"), with the evaluate
    stage's columns (pwprune.stages.jobs.METRIC_COLUMNS: n, accuracy, auroc, tpr, fpr,
    degenerate, params, macs, latency_ms, ...). macs_before/macs_after and achieved_reduction are
    in the count the target is in (`counted_layers`, as prune.json's); history: the fine-tuning's
    per-epoch records (pwprune.train.fit), loss_shares: each epoch's share of the loss per label x
    group cell, by name."""

    model: nn.Module
    metrics: list
    method: str
    target: float
    loss: str
    achieved_reduction: float
    within_tolerance: bool
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    counted_layers: str
    note: str = ""
    history: list = field(default_factory=list)
    loss_shares: list = field(default_factory=list)

    def table(self):
        """The metrics as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.metrics)

    def who_pays(self, split: str = "test"):
        """Per group (and "all") on `split`: n, the dense, pruned and fine-tuned accuracy, the drop
        from dense to fine-tuned (a fraction; positive = lost accuracy) and the excess drop (the
        group's drop minus the overall one: the max disparity CEAG bounds). A DataFrame indexed by
        group, in the data's group order."""
        t = self.table()
        t = t[t["split"] == split]
        if t.empty:
            splits = sorted(set(self.table()["split"]))
            raise ValueError(f"split {split!r} was not evaluated; evaluated splits: {', '.join(splits)}")
        acc = t.pivot(index="group", columns="stage", values="accuracy")
        order = list(dict.fromkeys(t["group"]))
        out = acc.loc[order, list(STAGES)].add_suffix("_accuracy")
        out.columns.name = None
        out.insert(0, "n", t[t["stage"] == "dense"].set_index("group").loc[order, "n"])
        out["drop"] = out["dense_accuracy"] - out["finetuned_accuracy"]
        out["excess_drop"] = out["drop"] - out.loc["all", "drop"]
        return out


class InMemoryData:
    """A dataset held in memory with the shape of pwprune.data.Prepared: `meta` (class and group
    names, normalisation, eval_splits, ...) and `splits` {name: pwprune.data.Split}, so the
    stages' loaders (pwprune.stages.inputs) read it as they read a prepared folder."""

    def __init__(self, meta: dict, splits: dict):
        self.meta, self.splits, self.out_dir = meta, splits, None

    def __repr__(self):
        return f"InMemoryData(splits={ {n: len(s) for n, s in self.splits.items()} })"


def _numpy(a, what):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except Exception as e:
        raise TypeError(f"{what}: cannot be read as an array ({type(a).__name__}: {e})") from None


DATA_FORMS = (
    "a prepared dataset (its folder, or pwprune.data.load_prepared's result) as `train` alone; or per "
    "split a pwprune.data.Split, Batches, SplitDataset, or a tuple (x, y, groups) of arrays or tensors"
)


def _split_arrays(obj, what):
    """(x, y, g, meta or None) of one split argument."""
    from pwprune.data import Split
    from pwprune.data.dataset import Batches, SplitDataset

    if isinstance(obj, Batches):
        return obj.split.x, obj.split.y, obj.split.g, obj.meta
    if isinstance(obj, SplitDataset):
        c = obj.x.shape[1]
        norm = {"mean": obj.mean.reshape(c).tolist(), "std": obj.std.reshape(c).tolist()}
        return obj.x, obj.y.numpy(), obj.g.numpy(), norm
    if isinstance(obj, Split):
        return obj.x, obj.y, obj.g, None
    if isinstance(obj, (tuple, list)):
        if len(obj) != 3:
            raise ValueError(f"{what}: a tuple (x, y, groups) has 3 items, got {len(obj)}")
        return obj[0], obj[1], obj[2], None
    raise TypeError(f"{what}: got {type(obj).__name__}; expected {DATA_FORMS}")


def _ids(values, names, what, role):
    """Integer ids and names of labels or groups given per split (values: {split: array}); strings
    are names (sorted unless `names` gives the order), integers are ids into `names`."""
    arrays = {s: _numpy(v, f"{what[s]} {role}").reshape(-1) for s, v in values.items()}
    every = np.concatenate(list(arrays.values()))
    if every.dtype.kind in "USO":
        seen = sorted({str(v) for v in every})
        names = list(names) if names is not None else seen
        unknown = [v for v in seen if v not in names]
        if unknown:
            raise ValueError(f"{role}: value(s) {unknown[:5]} are not among the names given ({names})")
        index = {n: i for i, n in enumerate(names)}
        return {s: np.array([index[str(v)] for v in a], np.int64) for s, a in arrays.items()}, names
    if every.dtype.kind == "f":
        if not np.all(np.isfinite(every)) or not np.all(every == np.round(every)):
            raise ValueError(f"{role}: expected integer ids or strings, got non-integer numbers")
    elif every.dtype.kind not in "iub":
        raise ValueError(f"{role}: expected integer ids or strings, got dtype {every.dtype}")
    ids = {s: a.astype(np.int64) for s, a in arrays.items()}
    top = int(every.max()) if len(every) else -1
    if len(every) and int(every.min()) < 0:
        raise ValueError(f"{role}: ids must be >= 0, got {int(every.min())}")
    if names is None:
        names = [str(i) for i in range(top + 1)]
    elif top >= len(names):
        raise ValueError(f"{role}: id {top} occurs but only {len(names)} names are given ({list(names)})")
    return ids, [str(n) for n in names]


def in_memory_data(train, test=None, *, class_names=None, group_names=None) -> InMemoryData:
    """The data of `compress` as the stages read it (see the module docstring for the forms).
    `test` is one split or a dict {split name: split}, each evaluated; class_names / group_names
    name integer ids (or fix the order of string values). A prepared dataset (`train` a folder or
    a Prepared, `test` None) is returned as it is, with its own names and eval splits."""
    from pwprune.data import Prepared, Split, load_prepared
    from pwprune.data import _channel_stats as channel_stats
    from pwprune.data.groups import cell_counts

    if isinstance(train, (str, os.PathLike)):
        train = load_prepared(train)
    if isinstance(train, (Prepared, InMemoryData)):
        if test is not None or class_names is not None or group_names is not None:
            raise ValueError(
                "train: a prepared dataset brings its own evaluation splits and names; pass test, "
                "class_names and group_names only with per-split data"
            )
        return train
    if test is None:
        raise ValueError(f"test: required with per-split train data (one split or a dict of them); {DATA_FORMS}")
    tests = dict(test) if isinstance(test, dict) else {"test": test}
    if not tests or "train" in tests:
        raise ValueError(f"test: a dict of evaluation splits, none named 'train'; got {list(tests)}")
    what = {"train": "train", **{n: f"test[{n!r}]" if isinstance(test, dict) else "test" for n in tests}}
    raw = {"train": _split_arrays(train, "train"), **{n: _split_arrays(t, what[n]) for n, t in tests.items()}}
    xs = {}
    for s, (x, y, g, _) in raw.items():
        x = x if isinstance(x, np.ndarray) else _numpy(x, f"{what[s]} x")  # a memmap stays one
        if x.ndim != 4:
            hint = " (add the channel axis: x[:, None])" if x.ndim == 3 else ""
            raise ValueError(f"{what[s]}: x must be (N, C, H, W) images, got shape {tuple(x.shape)}{hint}")
        for role, v in (("labels", y), ("groups", g)):
            n = len(_numpy(v, f"{what[s]} {role}").reshape(-1))
            if n != len(x):
                raise ValueError(f"{what[s]}: {role} has {n} entries but x has {len(x)} samples; one per sample")
        xs[s] = x
    shape, kind = xs["train"].shape[1:], xs["train"].dtype.kind
    if kind not in "uf" or (kind == "u" and xs["train"].dtype != np.uint8):
        raise ValueError(f"train: x must be uint8 images or float inputs, got dtype {xs['train'].dtype}")
    for s, x in xs.items():
        if x.shape[1:] != shape or x.dtype.kind != kind:
            raise ValueError(
                f"{what[s]}: x is {x.dtype} {tuple(x.shape[1:])} per sample but train's is "
                f"{xs['train'].dtype} {tuple(shape)}; every split must match"
            )
        if kind == "f":
            xs[s] = np.ascontiguousarray(x, np.float32)
    train_meta = raw["train"][3] or {}
    class_names = class_names if class_names is not None else train_meta.get("class_names")
    group_names = group_names if group_names is not None else train_meta.get("group_names")
    ys, class_names = _ids({s: r[1] for s, r in raw.items()}, class_names, what, "labels")
    gs, group_names = _ids({s: r[2] for s, r in raw.items()}, group_names, what, "groups")
    if len(class_names) < 2:
        raise ValueError(f"labels: a single class {class_names}; pruning needs a task with at least two")
    c, h, w = (int(v) for v in shape)
    if "mean" in train_meta:
        mean, std = list(train_meta["mean"]), list(train_meta["std"])
    elif kind == "u":
        mean, std = channel_stats(xs["train"])  # as pwprune.data.prepare computes them
    else:  # float inputs are used as given: x / 255 - 0, divided by 1 / 255
        mean, std = [0.0] * c, [1.0 / 255.0] * c
    names = list(raw)
    splits = {s: Split(s, xs[s], ys[s], gs[s]) for s in names}
    meta = {
        "name": "in_memory",
        "kind": "in_memory",
        "num_classes": len(class_names),
        "class_names": class_names,
        "group_names": group_names,
        "groups_are_classes": bool(train_meta.get("groups_are_classes", False)),
        "in_channels": c,
        "input_size": min(h, w),  # the augmentation's crop padding is input_size // 8
        "input_shape": [c, h, w],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "splits": names,
        "eval_splits": [n for n in names if n != "train"],
        "sizes": {s: len(splits[s]) for s in names},
        "group_counts": {s: np.bincount(gs[s], minlength=len(group_names)).tolist() for s in names},
        "cell_counts": {s: cell_counts(ys[s], gs[s], len(class_names), len(group_names)) for s in names},
    }
    return InMemoryData(meta, splits)


def _example(data) -> torch.Tensor:
    c, h, w = data.meta.get("input_shape") or [data.meta["in_channels"], *[data.meta["input_size"]] * 2]
    return torch.zeros(1, int(c), int(h), int(w))


def _check_choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name} {value!r} is unknown; valid: {', '.join(map(str, valid))}")


def _check_args(
    method,
    target,
    loss,
    method_options,
    loss_options,
    epochs,
    lr,
    batch_size,
    prune_batch_size,
    tolerance,
    layers,
    finetune_options,
    evaluate,
):
    """Every argument checked before any work, each error naming the argument and what is valid."""
    from pwprune.loss import make_loss
    from pwprune.pruning.target import _resolve_options

    _check_choice("method", method, METHODS)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ValueError(f"target must be a number in (0, 1) (the fraction of MACs removed), got {target!r}")
    _check_choice("loss", loss, LOSSES)
    _check_choice("layers", layers, LAYER_SCOPES)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance <= 0.2:
        raise ValueError(f"tolerance must be in (0, 0.2] (as prune.tolerance), got {tolerance!r}")
    for name, v in (("method_options", method_options), ("loss_options", loss_options)):
        if v is not None and not isinstance(v, dict):
            raise ValueError(f"{name} must be a dict, got {type(v).__name__}")
    try:
        _resolve_options(method, dict(method_options or {}))
    except ValueError as e:
        raise ValueError(f"method_options: {e}") from None
    from pwprune.config import phase_losses

    phases = phase_losses(loss, method)
    fine_loss = phases[1]
    pw_phase = any(p.startswith("pw") for p in phases)  # the PW loss in either phase
    valid = PW_OPTIONS if pw_phase else LOSS_OPTIONS[fine_loss]
    unknown = sorted(set(loss_options or {}) - set(valid))
    if unknown:
        raise ValueError(f"loss_options {unknown} do not apply to loss {loss!r}; valid: {', '.join(valid) or 'none'}")
    try:
        if pw_phase:
            make_loss("pw", **(loss_options or {}))
        elif fine_loss == "ceag":
            from pwprune.ceag import CEAGLoss

            CEAGLoss(1, **(loss_options or {}))
    except ValueError as e:
        raise ValueError(f"loss_options: {e}") from None
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("prune_batch_size", prune_batch_size)):
        if v is None and name == "prune_batch_size":
            continue
        low = 0 if name == "epochs" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    unknown = sorted(set(finetune_options or {}) - set(FINETUNE_OPTIONS))
    if unknown:
        raise ValueError(f"finetune_options {unknown} are unknown; valid: {', '.join(FINETUNE_OPTIONS)}")
    unknown = sorted(set(evaluate or {}) - {"batch_size", "latency_batch", "latency_repeats"})
    if unknown:
        raise ValueError(f"evaluate {unknown} are unknown; valid: batch_size, latency_batch, latency_repeats")


def _check_model(model, data, device):
    """The model takes the data's inputs and gives one logit (two classes) or one per class."""
    probe = copy.deepcopy(model).to(device).eval()
    example = _example(data).to(device)
    try:
        with torch.no_grad():
            out = probe(example)
    except Exception as e:
        raise ValueError(
            f"model: fails on an input of shape {tuple(example.shape)}, the data's (N, C, H, W) "
            f"({type(e).__name__}: {e})"
        ) from None
    k = data.meta["num_classes"]
    got = 1 if out.ndim == 1 else int(out.shape[-1])
    ok = (1, 2) if k == 2 else (k,)
    if out.ndim > 2 or got not in ok:
        raise ValueError(
            f"model: gives outputs of shape {tuple(out.shape)} for one sample, but the labels have {k} "
            f"classes ({', '.join(data.meta['class_names'])}); expected {' or '.join(map(str, ok))} output(s)"
        )


def compress(
    model,
    train,
    test=None,
    *,
    method: str,
    target: float,
    loss: str = "pw",
    method_options: dict | None = None,
    loss_options: dict | None = None,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    finetune_options: dict | None = None,
    prune_batch_size: int | None = None,
    tolerance: float = PRUNE_TOLERANCE,
    layers: str = "all",
    transformer: str = "all",
    class_names=None,
    group_names=None,
    evaluate: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    deterministic: bool | None = None,
    log=print,
) -> CompressionResult:
    """Prune `model` to remove `target` of its MACs with `method`, fine-tune it with `loss`, and
    evaluate the dense, pruned and fine-tuned models per group.

    model: a torch nn.Module; it is left untouched (the result's model is a pruned copy). It
    must give one logit (two classes) or one logit per class.
    train, test: the data (module docstring); test may be a dict of named evaluation splits.
    class_names, group_names: names for integer label / group ids (default: the ids as strings).
    method: one of pwprune.names.METHODS (random, magnitude, taylor, autobot, fairgrape,
    fairprune); method_options: its options as under params.yaml's `prune.<method>`
    (pwprune.pruning.target.OPTIONS[method], plus min_channels and round_to).
    target: the fraction of MACs to remove, in (0, 1); reached within `tolerance` (prune.tolerance)
    in the count `layers` names ("all" every layer, "conv" full convolutions only). transformer:
    what a model with attention loses (TRANSFORMER_SCOPES: "all", "heads", "head_dims", "mlp";
    docs/transformers.md). A model pwprune cannot prune (models.refusal: timm's Swin, MaxViT,
    ShuffleNetV2, attention of other kinds) is refused with the reason before anything else is
    done; a torchvision ViT is pruned with its attention as separate qkv and proj layers
    (models.rewrite_vit_attention: the same function, other state-dict keys), a torchvision Swin
    with its window attention calling its layers (models.WindowAttention, the same keys).
    loss: one of LOSSES, an experiment's loss label: "ce" (cross-entropy), "pw" (the PW loss in
    both phases), "ceag" (CE pruning, CEAG constrained fine-tuning), or a PW ablation
    (pw_weight, pw_correct, pw_prune_only, pw_finetune_only). The pruning phase uses it only for
    the data-driven methods. loss_options: {"min_weight", "gamma"} for the PW family (default
    0.75, 5.0: PerformanceWeightedLoss's), {"epsilon", "dual_lr"} for ceag (0.01, 0.01).
    epochs, lr, batch_size: the fine-tuning loop (epochs 0: no fine-tuning); finetune_options: the
    rest of a `finetune` section (FINETUNE_OPTIONS: weight_decay, optimizer, scheduler, augment,
    ...). prune_batch_size: the data-driven methods' batch size (default batch_size).
    evaluate: {"batch_size", "latency_batch", "latency_repeats"} of the evaluation (default 256, 1, 20).
    seed: seeds the pruning and the fine-tuning as the workflow's jobs are seeded. device: "auto",
    "cpu", "cuda" or "cuda:N". precision: fp32, bf16 or fp16 (fine-tuning's autocast).
    deterministic: True/False sets torch's deterministic mode as the jobs do; None leaves it.
    log: called with each progress line (the jobs' log lines).

    Returns a CompressionResult: the model, the per-group metrics of all three stages, the MACs
    before and after, and the fine-tuning history. Bad arguments raise ValueError (TypeError for a
    wrong type) naming the argument and the valid values, before any work is done."""
    from pwprune.config import phase_losses
    from pwprune.environment import environment_id, numeric_environment
    from pwprune.models import check_prunable, rewrite_vit_attention
    from pwprune.stages.evaluate import evaluate as evaluate_model
    from pwprune.stages.finetune import finetune_model, loss_shares
    from pwprune.stages.inputs import dense_teacher_logits, make_teacher, set_deterministic
    from pwprune.stages.prune import prune_model
    from pwprune.train import resolve_device, seed_everything

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_prunable(model)  # by its module classes alone: before any copy, trace or forward pass
    _check_choice("transformer", transformer, TRANSFORMER_SCOPES)
    _check_args(
        method,
        target,
        loss,
        method_options,
        loss_options,
        epochs,
        lr,
        batch_size,
        prune_batch_size,
        tolerance,
        layers,
        finetune_options,
        evaluate,
    )
    _check_choice("precision", precision, PRECISIONS)
    data = in_memory_data(train, test, class_names=class_names, group_names=group_names)
    device = resolve_device(device)
    _check_model(model, data, device)
    if deterministic is not None:
        set_deterministic(bool(deterministic))
    log = log or (lambda *_: None)
    prune_loss, fine_loss = phase_losses(loss, method)
    loop = {"epochs": epochs, "lr": float(lr), "batch_size": batch_size, **(finetune_options or {})}
    augment = bool(loop.get("augment", False))
    eval_cfg = {"batch_size": 256, "latency_batch": 1, "latency_repeats": 20, **(evaluate or {})}
    example = _example(data)
    env = environment_id(numeric_environment(device, precision))

    def rows(m, stage, reduction, counted="all"):
        return evaluate_model(m, data, None, eval_cfg, device, stage, reduction, log, counted, env, example=example)

    # as the stages load a checkpoint (load_checkpoint); a torchvision ViT as models.build_model builds it
    dense = rewrite_vit_attention(copy.deepcopy(model)).to(device).eval()
    metrics = rows(dense, "dense", 0.0)
    logits = None
    if (prune_loss != "none" or fine_loss != "ce") and not augment:
        logits = dense_teacher_logits(dense, data, seed, None, device)
    settings = dict(loss_options or {})
    prune = {
        "method": method,
        "target": float(target),
        "tolerance": float(tolerance),
        "layers": layers,
        "transformer": transformer,
        "options": dict(method_options or {}),
        "loss": prune_loss,
    }
    teacher = None
    if prune_loss != "none":
        prune.update(batch_size=prune_batch_size or batch_size, augment=augment)
        if prune_loss.startswith("pw"):
            prune["pw"] = settings
        teacher = make_teacher(augment, dense, None, device, logits=logits)
    seed_everything(seed)  # as each workflow job seeds itself (stages.inputs.setup)
    result, _ = prune_model(
        copy.deepcopy(dense), None, prune, seed, device, "compress", data, teacher, log, example=example
    )
    pruned = result.model
    metrics += rows(pruned, "pruned", result.achieved_reduction, result.counted_layers)
    finetune = {"loop": loop, "loss": fine_loss}
    if fine_loss.startswith("pw"):
        finetune["pw"] = settings
    elif fine_loss == "ceag":
        finetune["ceag"] = settings
    teacher = make_teacher(augment, dense, None, device, logits=logits) if fine_loss != "ce" else None
    seed_everything(seed)
    history = finetune_model(
        pruned, data, finetune, teacher, seed, device, "compress", log, numerics={"precision": precision}
    )
    if history and history[-1].get("diverged"):
        raise RuntimeError(
            "compress: fine-tuning diverged (finetune_options on_divergence 'degenerate'); the model is "
            f"unusable: lower lr (now {lr})"
        )
    metrics += rows(pruned, "finetuned", result.achieved_reduction, result.counted_layers)
    return CompressionResult(
        model=pruned,
        metrics=metrics,
        method=method,
        target=float(target),
        loss=loss,
        achieved_reduction=result.achieved_reduction,
        within_tolerance=bool(result.within_tolerance),
        macs_before=result.macs_before,
        macs_after=result.macs_after,
        params_before=result.params_before,
        params_after=result.params_after,
        counted_layers=result.counted_layers,
        note=result.note or "",
        history=history,
        loss_shares=loss_shares(history, data.meta),
    )
