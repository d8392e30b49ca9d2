"""Training and fine-tuning loops (the paper's AdamW + cosine schedule by default)."""

import contextlib
import copy
import math
import random
import time

import numpy as np
import torch
import torch.nn as nn

from pwprune.names import ON_DIVERGENCE, OPTIMIZERS, PRECISIONS, SCHEDULERS
from pwprune.rows import RowBuffer, expected_rows

PROGRESS_SECONDS = 30.0  # within an epoch, a progress line at most this often


class DivergenceError(RuntimeError):
    """Training produced a NaN/inf loss or non-finite weights."""


def resolve_device(name: str) -> torch.device:
    """ "auto" | "cpu" | "cuda" | "cuda:N" -> torch.device; refuses a CUDA device that is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if isinstance(name, str) and (name == "cuda" or name.startswith("cuda:")):
        index = name[5:]
        if index and not index.isdigit():
            raise ValueError(f"device {name!r}: expected 'cuda:N' with an integer N")
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: CUDA is not available here; use 'cpu' or 'auto'")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    # cuDNN's algorithm choice is deterministic mode's (pwprune.stages.inputs.set_deterministic)


def make_loader(dataset, batch_size: int, shuffle: bool, seed: int) -> torch.utils.data.DataLoader:
    """Loader of (x, y, g, idx) batches over a Dataset such as pwprune.data.SplitDataset (which
    owns augmentation). The shuffle order comes from its own seeded generator, so it does not
    depend on how much of the global RNG other code consumed; each pass reshuffles."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    gen = torch.Generator().manual_seed(seed)
    if getattr(dataset, "augment", True) is False:
        # Without augmentation a SplitDataset gathers a whole batch in one indexing call (several
        # times faster on small images than a call per sample). The sampler is the one DataLoader
        # builds for shuffle=True/False, so the batches and their order are the same as before.
        base = (
            torch.utils.data.RandomSampler(dataset, generator=gen)
            if shuffle
            else torch.utils.data.SequentialSampler(dataset)
        )
        sampler = torch.utils.data.BatchSampler(base, batch_size=batch_size, drop_last=False)
        # the generator also goes to the loader: each pass draws its base seed from it, which
        # moves the shuffle order on exactly as before (and keeps the global RNG untouched)
        return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=0, generator=gen)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0)


def defer_dynamo() -> bool:
    """Let eager training run without importing torch._dynamo, which costs ~1.5 s: after
    `import torch` itself the largest fixed cost of a short pipeline job.

    torch.optim imports torch._dynamo on the first optimizer call only to mark its functions "do
    not compile" (torch._disable_dynamo) and to call torch._dynamo.graph_break() in every step;
    both do nothing outside torch.compile. This puts a stand-in module in its place that answers
    those two calls and, on any other use (torch.compile, a config lookup), imports the real
    torch._dynamo and hands over to it. For processes that never compile: pipeline jobs call it
    from pwprune.stages.inputs.setup. Returns False when torch._dynamo is already loaded."""
    import importlib
    import sys
    import types

    if "torch._dynamo" in sys.modules:
        return False

    class _Deferred(types.ModuleType):
        @staticmethod
        def graph_break():
            pass

        @staticmethod
        def disable(fn=None, recursive=True, wrapping=True, **kwargs):
            return fn if fn is not None else (lambda f: f)

        def __getattr__(self, name):
            if sys.modules.get("torch._dynamo") is self:
                del sys.modules["torch._dynamo"]
                if getattr(torch, "_dynamo", None) is self:
                    del torch._dynamo
            return getattr(importlib.import_module("torch._dynamo"), name)

    stand_in = _Deferred("torch._dynamo", "deferred by pwprune.train.defer_dynamo")
    sys.modules["torch._dynamo"] = stand_in
    torch._dynamo = stand_in
    return True


def _finite_weights(model: nn.Module) -> bool:
    return all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


class Resume:
    """Where a training job keeps its resume state, how often it refreshes it, and whose it is.

    path: a file beside the job's output (the stages use `<model>.resume`). fingerprint: a string
    that names everything the run's result depends on (the stages hash their settings and input
    files): a state saved under another fingerprint is set aside, never continued from.
    every_seconds: inside an epoch, the state is written after a batch once this long has passed
    since the last write; it is always written at an epoch's end. Writes are atomic (a kill
    mid-write leaves the previous state). The file holds only tensors and plain data and is read
    with torch.load(weights_only=True). `clear()` removes it: the stage calls it once its own
    outputs are written."""

    FORMAT = "pwprune-resume"

    def __init__(self, path, fingerprint: str, every_seconds: float = 600.0):
        if not (isinstance(every_seconds, (int, float)) and every_seconds >= 0):
            raise ValueError(f"every_seconds must be a number >= 0, got {every_seconds!r}")
        self.path, self.fingerprint, self.every_seconds = str(path), str(fingerprint), float(every_seconds)

    def load(self, log=print):
        import os

        if not os.path.exists(self.path):
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            log(f"ignoring the unreadable resume state {self.path} ({type(e).__name__}: {e}); starting at epoch 1")
            return None
        if not isinstance(state, dict) or state.get("format") != self.FORMAT:
            log(f"ignoring {self.path}: not a pwprune resume state; starting at epoch 1")
            return None
        if state.get("fingerprint") != self.fingerprint:
            log(
                f"ignoring the resume state {self.path}: it was saved for other settings or inputs; starting at epoch 1"
            )
            return None
        return state

    def save(self, state: dict) -> None:
        from pwprune.fileio import atomic_open

        with atomic_open(self.path) as f:
            torch.save({"format": self.FORMAT, "fingerprint": self.fingerprint, **state}, f)

    def clear(self) -> None:
        import os

        if os.path.exists(self.path):
            os.remove(self.path)


def _rng_state(device) -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state, device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def autocast_dtype(precision: str, device):
    """None for fp32 (no autocast), else the dtype autocast computes in. fp16 needs CUDA (its
    GradScaler guards against underflow there); bf16 works on CPU and CUDA."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device (this job runs on {torch.device(device).type}); "
            "use 'bf16' for mixed precision on a CPU, or 'fp32'"
        )
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def fit(
    model: nn.Module,
    loader,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    loss_fn,
    teacher=None,
    device="cpu",
    optimizer: str = "adamw",
    scheduler: str = "cosine",
    log=print,
    context: str = "",
    on_divergence: str = "raise",
    milestones=None,
    lr_decay: float = 0.1,
    backbone_lr_scale: float = 1.0,
    backbone_lr_growth: float = 1.0,
    precision: str = "fp32",
    channels_last: bool = False,
    resume: Resume | None = None,
    validate=None,
    early_stopping: dict | None = None,
) -> list[dict]:
    """Train `model` in place on (x, y, g, idx) batches; returns one dict per epoch.

    `loss_fn` is called as loss_fn(logits, teacher_logits, targets) and must have a `reduction`
    attribute (PerformanceWeightedLoss, or anything built like it): fit trains on a copy with
    reduction="none" so it can split each epoch's loss over label x group cells, and backprops
    the batch mean (what reduction="mean" gives). `teacher(x, idx) -> logits` (CachedTeacher or
    FrozenTeacher) is required when the loss reweights or corrects targets. Single-logit models
    get float 0/1 targets.

    Schedules, stepped once per epoch: "cosine" (CosineAnnealingLR over `epochs`), "multistep"
    (torch's MultiStepLR: the lr is multiplied by `lr_decay` once each of the epoch counts in
    `milestones` has been completed, so with milestones [100] epochs 1..100 train with lr and
    epoch 101 on with lr * lr_decay), "none".

    backbone_lr_scale < 1 trains the head (models.classifier_layers) and the rest of the network
    (the backbone) in two parameter groups, as Lightning's BackboneFinetuning(0,
    backbone_initial_ratio_lr=scale, lambda_func=lambda e: growth, should_align=True) does: the
    head follows the schedule; the backbone starts at lr * scale, is multiplied by
    `backbone_lr_growth` at each new epoch and is capped by the head's lr of that epoch (and
    stays aligned to it once it gets there): backbone_lr(e) = min(lr * scale * growth**(e-1),
    head_lr(e)) for epoch e = 1, 2, ... . scale == 1 keeps one group (the head's lr for all).

    precision: "fp32", or "bf16" / "fp16": the model's (and the frozen teacher's) forward pass
    under torch.autocast in that dtype, the weights and the optimiser in fp32, and the loss (the
    PW loss's weights and targets included) computed in fp32 from the logits in every case; fp16
    (CUDA only) scales the loss with a GradScaler. channels_last: the model and each batch in
    channels-last memory layout (faster convolutions on CUDA tensor cores).

    resume (a Resume): the job's resume state. Found with this run's fingerprint, training
    continues from it (model, optimiser, scheduler, GradScaler, the loader's generators and its
    position inside the epoch, the global RNG states, the history so far) instead of starting at
    epoch 1; it is written after each epoch and, inside one, at most every `every_seconds`. On the
    CPU an interrupted and resumed run ends with the same weights, bit for bit, as an
    uninterrupted one. It needs a loader with state_dict() (pwprune.data.dataset.Batches).

    Each history entry: epoch, loss (mean per-sample loss), accuracy (on the fly, training mode),
    lr (the head's), backbone_lr (the rest's; = lr with one group), seconds,
    loss_shares [{label, group, share}], diverged; with a loss that declares `needs_groups`
    (pwprune.ceag.CEAGLoss: called as loss_fn(logits, teacher_logits, targets, groups=g), its
    dual_step() run after each optimiser step) also constraints {multipliers, violations} per
    group, from its epoch_record(), and a log line of them. A NaN/inf loss or non-finite
    weights raise DivergenceError, or with on_divergence="degenerate" stop training and return
    the history with diverged=True on its last entry (the model is then unusable).

    validate: a callable(model) -> {"loss", "accuracy", "groups": [{"group", "n", "accuracy",
    "loss"}]} run after every epoch (pwprune.stages.inputs.validation: the "val" split, eval mode,
    no grad, no random draw, so the weights are the same bit for bit with or without it); its
    result is the epoch's "val" entry, and a log line. The convergence diagnostic reads it
    (pwprune.convergence).
    early_stopping: {"patience", "monitor" ("loss" | "accuracy" | "worst_group_accuracy", default
    "loss"), "min_delta" (0), "restore_best" (True)}, needs `validate`: training stops once the
    monitored validation value has not improved by more than min_delta for `patience` epochs
    (`epochs` is the maximum), and with restore_best ends with the best epoch's weights; the last
    entry then has "early_stopping": {best_epoch, stopped_epoch, monitor, restored}. The best
    weights are part of the resume state, so a killed run resumes to the same result.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
    if on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"on_divergence must be one of {ON_DIVERGENCE}, got {on_divergence!r}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    if scheduler == "multistep":
        if (
            not isinstance(milestones, (list, tuple))
            or not milestones
            or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones)
            or any(a >= b for a, b in zip(milestones, milestones[1:]))
        ):
            raise ValueError(
                f"scheduler 'multistep' needs milestones: a non-empty, strictly increasing "
                f"list of positive epoch counts, got milestones={milestones!r}"
            )
        if not (isinstance(lr_decay, (int, float)) and 0 < lr_decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay!r}")
    if not (isinstance(backbone_lr_scale, (int, float)) and 0 < backbone_lr_scale <= 1):
        raise ValueError(f"backbone_lr_scale must be in (0, 1], got {backbone_lr_scale!r}")
    if not (isinstance(backbone_lr_growth, (int, float)) and backbone_lr_growth >= 1):
        raise ValueError(f"backbone_lr_growth must be >= 1, got {backbone_lr_growth!r}")
    if not hasattr(loss_fn, "reduction"):
        raise ValueError(
            "loss_fn must be a PerformanceWeightedLoss-like object with a `reduction` "
            "attribute, called as loss_fn(logits, teacher_logits, targets)"
        )
    # a loss that declares needs_groups (pwprune.ceag.CEAGLoss) is called with groups=g as well
    needs_groups = bool(getattr(loss_fn, "needs_groups", False))
    if teacher is None and (
        getattr(loss_fn, "reweight", False)
        or getattr(loss_fn, "correct_targets", False)
        or (needs_groups and getattr(loss_fn, "needs_teacher", False))
    ):
        raise ValueError(
            "teacher is None, but loss_fn reweights or corrects targets with the dense "
            "model's outputs; pass CachedTeacher(...) or FrozenTeacher(...)"
        )
    if early_stopping is not None:
        early_stopping = {"monitor": "loss", "min_delta": 0.0, "restore_best": True, **early_stopping}
        if validate is None:
            raise ValueError("early_stopping needs a validation split (validate=...); the prepared data has none")
        if not isinstance(early_stopping["patience"], int) or early_stopping["patience"] < 1:
            raise ValueError(f"early_stopping.patience must be an integer >= 1, got {early_stopping['patience']!r}")
        if early_stopping["monitor"] not in MONITORS:
            raise ValueError(f"early_stopping.monitor must be one of {MONITORS}, got {early_stopping['monitor']!r}")
    if resume is not None and not hasattr(loader, "state_dict"):
        raise ValueError(
            "resume needs a loader that can save its position (state_dict/load_state_dict), "
            "such as pwprune.data.dataset.Batches"
        )
    device = torch.device(device)
    amp_dtype = autocast_dtype(precision, device)
    per_sample_fn = copy.deepcopy(loss_fn)
    per_sample_fn.reduction = "none"
    prefix = f"{context}: " if context else ""
    layout = torch.channels_last if channels_last else torch.contiguous_format

    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = model.parameters()
    if backbone_lr_scale != 1:
        from pwprune.models import classifier_layers

        head = {id(p) for m in classifier_layers(model) for p in m.parameters()}
        params = [
            {"params": [p for p in model.parameters() if id(p) in head]},
            {"params": [p for p in model.parameters() if id(p) not in head], "lr": lr * backbone_lr_scale},
        ]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    # stepped once per epoch, so the lr logged for an epoch is the one it trained with
    sched = None
    if scheduler == "cosine" and epochs:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    elif scheduler == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=lr_decay)
    # fp16 scales the loss against underflow; every other precision steps through the same calls
    # with the scaler disabled, where they pass straight through (scale(loss) is loss, step is
    # opt.step(), update does nothing): one code path, which CPU runs exercise too
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    backbone_lr = lr * backbone_lr_scale

    history = []
    best = None  # with early stopping: {"score", "epoch", "state"} of the best validated epoch
    first_epoch, partial = 1, None  # partial: the accumulators of an epoch interrupted mid-way
    saved = resume.load(log) if resume is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        if sched is not None:
            sched.load_state_dict(saved["scheduler"])
        if scaler.is_enabled() and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        loader.load_state_dict(saved["loader"])
        _set_rng_state(saved["rng"], device)
        history, backbone_lr, partial = saved["history"], saved["backbone_lr"], saved["partial"]
        best = saved.get("best")
        if needs_groups:  # the multipliers and the epoch's constraint counts
            per_sample_fn.load_state_dict(saved["loss_state"])
        first_epoch = saved["epoch"] + (0 if partial else 1)
        where = f"epoch {first_epoch} after batch {partial['batches']}" if partial else f"epoch {first_epoch}"
        log(f"{prefix}resuming at {where} from the saved state {resume.path}")

    def snapshot(epoch, part):
        resume.save(
            {
                "epoch": epoch,  # the epoch `part` belongs to, or the last one completed
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "loader": loader.state_dict(),
                "rng": _rng_state(device),
                "history": history,
                "backbone_lr": backbone_lr,
                "partial": part,
                "best": best,
                **({"loss_state": per_sample_fn.state_dict()} if needs_groups else {}),
            }
        )

    last_save = time.monotonic()
    if early_stopping is not None and history and history[-1].get("early_stopping"):
        first_epoch = epochs + 1  # resumed after it had stopped: nothing left to train
    for epoch in range(first_epoch, epochs + 1):
        start = time.perf_counter()
        losses, labels, groups = (RowBuffer(expected_rows(loader)) for _ in range(3))
        if partial is None:
            if len(opt.param_groups) == 2:
                # the schedule is the head's; whatever it did to the backbone's group is overwritten
                # here (the recursion of Lightning's BackboneFinetuning; never above the head's lr)
                if epoch > 1:
                    backbone_lr *= backbone_lr_growth
                backbone_lr = min(backbone_lr, opt.param_groups[0]["lr"])
                opt.param_groups[1]["lr"] = backbone_lr
            correct, done, seconds = 0, 0, 0.0
        else:  # continue the interrupted epoch's accumulators
            for buffer, key in ((losses, "losses"), (labels, "labels"), (groups, "groups")):
                buffer.append(partial[key])
            correct, done, seconds = partial["correct"], partial["batches"], partial["seconds"]
            partial = None
        current_lr = opt.param_groups[0]["lr"]
        backbone_current = opt.param_groups[-1]["lr"]
        bad = None
        last_note = start
        for batch, (x, y, g, idx) in enumerate(loader, done + 1):
            if time.perf_counter() - last_note > PROGRESS_SECONDS:  # long epochs (CelebA) show life
                last_note = time.perf_counter()
                log(f"{prefix}epoch {epoch}/{epochs} batch {batch}/{len(loader)}")
            x, y = x.to(device).contiguous(memory_format=layout), y.to(device)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext():
                logits = model(x)
                teacher_logits = teacher(x, idx) if teacher is not None else None
            # the loss (PW weights and corrected targets included) in fp32, whatever the precision
            logits = logits.float()
            teacher_logits = teacher_logits.float() if teacher_logits is not None else None
            binary = logits.ndim == 1 or logits.shape[1] == 1
            targets = y.float() if binary else y
            if needs_groups:
                per_sample = per_sample_fn(logits, teacher_logits, targets, groups=g.to(device))
            else:
                per_sample = per_sample_fn(logits, teacher_logits, targets)
            loss = per_sample.mean()
            value = loss.item()
            if not math.isfinite(value):
                bad = f"loss became {value}"
                break
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if needs_groups:  # the multipliers' ascent step, after the model's descent step
                per_sample_fn.dual_step()
            losses.append(per_sample.detach().float().cpu())
            labels.append(y.cpu().long())
            groups.append(g.cpu().long())
            pred = (logits.detach().reshape(-1) > 0).long() if binary else logits.detach().argmax(1)
            correct += int((pred == y).sum())
            done = batch
            if resume is not None and done < len(loader) and time.monotonic() - last_save >= resume.every_seconds:
                part = {
                    "batches": done,
                    "losses": losses.tensor(),
                    "labels": labels.tensor(),
                    "groups": groups.tensor(),
                    "correct": correct,
                    "seconds": seconds + time.perf_counter() - start,
                }
                snapshot(epoch, part)
                last_save = time.monotonic()
        if bad is None and not losses:
            raise ValueError(f"{prefix}loader yielded no batches")
        if bad is None and not _finite_weights(model):
            bad = "weights became non-finite"
        if bad is not None:
            message = f"{prefix}{bad} at epoch {epoch}/{epochs} (lr={lr}); lower the learning rate or check the data"
            if on_divergence == "raise":
                raise DivergenceError(message)
            log(message + "; stopping and marking the run degenerate")
            history.append(
                {
                    "epoch": epoch,
                    "loss": float("nan"),
                    "accuracy": float("nan"),
                    "lr": current_lr,
                    "backbone_lr": backbone_current,
                    "seconds": seconds + time.perf_counter() - start,
                    "loss_shares": [],
                    "diverged": True,
                }
            )
            return history

        losses, labels, groups = losses.tensor(), labels.tensor(), groups.tensor()
        history.append(
            {
                "epoch": epoch,
                "loss": losses.mean().item(),
                "accuracy": correct / len(labels),
                "lr": current_lr,
                "backbone_lr": backbone_current,
                "seconds": seconds + time.perf_counter() - start,
                "loss_shares": loss_shares(losses, labels, groups),
                "diverged": False,
            }
        )
        if needs_groups:
            history[-1]["constraints"] = per_sample_fn.epoch_record()
        if sched is not None:
            sched.step()
        h = history[-1]
        backbone_note = f" backbone lr {backbone_current:.3g}" if len(opt.param_groups) == 2 else ""
        log(
            f"{prefix}epoch {epoch}/{epochs} loss {h['loss']:.4f} acc {h['accuracy']:.4f} "
            f"lr {current_lr:.3g}{backbone_note} {h['seconds']:.1f}s"
        )
        if needs_groups:
            c = h["constraints"]
            log(
                f"{prefix}epoch {epoch}/{epochs} constraints: multipliers "
                f"[{', '.join(f'{v:.4g}' for v in c['multipliers'])}] violations "
                f"[{', '.join('-' if v is None else f'{v:.4g}' for v in c['violations'])}]"
            )
        stop = False
        if validate is not None:
            h["val"] = validate(model)
            v = h["val"]
            per_group = ", ".join(f"{r['group']} {r['accuracy']:.4f}" for r in v["groups"])
            log(f"{prefix}epoch {epoch}/{epochs} validation loss {v['loss']:.4f} acc {v['accuracy']:.4f} ({per_group})")
            if early_stopping is not None:
                score = _monitored(v, early_stopping["monitor"])
                if best is None or score > best["score"] + early_stopping["min_delta"]:
                    best = {"score": score, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
                stop = epoch - best["epoch"] >= early_stopping["patience"]
                if stop or epoch == epochs:
                    restored = bool(early_stopping["restore_best"]) and best["epoch"] != epoch
                    h["early_stopping"] = {
                        "best_epoch": best["epoch"],
                        "stopped_epoch": epoch,
                        "monitor": early_stopping["monitor"],
                        "restored": restored,
                    }
                    why = f"no improvement for {early_stopping['patience']} epochs" if stop else "maximum epochs"
                    log(
                        f"{prefix}early stopping at epoch {epoch}/{epochs} ({why}); best validation "
                        f"{early_stopping['monitor']} at epoch {best['epoch']}"
                        + ("; its weights restored" if restored else "")
                    )
        if resume is not None:
            snapshot(epoch, None)
            last_save = time.monotonic()
        if stop:
            break
    if (
        early_stopping is not None
        and best is not None
        and history
        and history[-1].get("early_stopping", {}).get("restored")
    ):
        model.load_state_dict(best["state"])
    return history


MONITORS = ("loss", "accuracy", "worst_group_accuracy")


def _monitored(val: dict, monitor: str) -> float:
    """Higher is better: minus the loss, the accuracy, or the lowest group accuracy."""
    if monitor == "loss":
        return -float(val["loss"])
    if monitor == "accuracy":
        return float(val["accuracy"])
    return min(float(r["accuracy"]) for r in val["groups"] if r["n"])


def loss_shares(losses: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> list[dict]:
    """Share of the summed per-sample loss on each (label, group) cell present, sorted by cell.
    An all-zero loss has no shares to split; every cell then gets 0."""
    total = losses.double().sum().item()
    cells = torch.stack([labels.long(), groups.long()], dim=1)
    keys, inverse = torch.unique(cells, dim=0, return_inverse=True)
    sums = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, inverse, losses.double())
    return [
        {"label": int(k[0]), "group": int(k[1]), "share": (s / total) if total > 0 else 0.0}
        for k, s in zip(keys.tolist(), sums.tolist())
    ]
