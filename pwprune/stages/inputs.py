"""What the compute stages (train, prune, fine-tune, evaluate) share: the job's threads, seed and
device; prepared data as loaders (normalised as the model expects); the loss, the teacher, and
the call into the training loop."""

from __future__ import annotations

import contextlib

from pwprune.fileio import atomic_open


def setup(numerics, allotted, device_name: str, seed: int, log=print):
    """Thread count, deterministic mode, TF32 (off: set_tf32), seeds and device of a compute job.

    numerics: the job's `numerics` param (pwprune.config.numerics): `threads`, the configured CPU
    thread count (None on CUDA, where the job takes what it is allotted), and `deterministic`.
    allotted: Snakemake's `threads` for the job (scaled down to --cores, or the cluster's
    allocation). It decides where and when the job runs, never what it computes: with fewer
    cores allotted than configured, the job still computes with the configured count (slower,
    same numbers) and says so in its log.

    A job never compiles, so it also defers torch._dynamo's import (pwprune.train.defer_dynamo;
    ~1.5 s of every job)."""
    import torch

    from pwprune.train import defer_dynamo, resolve_device, seed_everything

    defer_dynamo()
    threads = numerics.get("threads")
    if threads is None:
        threads = max(1, int(allotted))
    elif int(allotted) < int(threads):
        log(
            f"computing with the configured {threads} CPU threads on {allotted} allotted core(s): "
            "the numbers do not depend on --cores or the cluster's allocation, only the speed does"
        )
    torch.set_num_threads(int(threads))
    set_deterministic(bool(numerics.get("deterministic", True)))
    set_tf32(False)
    seed_everything(seed)
    return resolve_device(device_name)


def set_deterministic(on: bool) -> None:
    """Deterministic mode: torch.use_deterministic_algorithms, cuDNN's benchmark off and
    deterministic on, and the cuBLAS workspace setting that deterministic cuBLAS needs (it must
    be in the environment before CUDA starts, so the job sets it before touching the device).
    Off: torch's defaults (cuDNN may pick the fastest, nondeterministic algorithm)."""
    import os

    import torch

    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = not on
    torch.backends.cudnn.deterministic = on


def set_tf32(on: bool) -> None:
    """TensorFloat-32 in CUDA matmuls and cuDNN convolutions (and RNNs). Every compute job turns it
    off (setup), so fp32 arithmetic is IEEE fp32 on Ampere and later GPUs too: torch's default lets
    cuDNN convolutions use TF32 (10-bit mantissa inputs), which would make dense training, the
    cached teacher outputs and the pruning scores of a `precision: fp32` run TF32. Under autocast
    (bf16, fp16) it concerns only the operations left in fp32. The environment records the state
    (pwprune.environment.tf32_allowed). Set through the allow_tf32 flags: they also set torch's
    per-operator fp32_precision API, so both read consistently afterwards (setting only the
    per-operator API makes torch refuse to read the allow_tf32 flags)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = bool(on)
    torch.backends.cudnn.allow_tf32 = bool(on)


class NondeterministicOpError(RuntimeError):
    """An operation without a deterministic kernel ran in deterministic mode."""


@contextlib.contextmanager
def deterministic_ops(option: str):
    """Turn torch's error for an operation without a deterministic kernel into one that names the
    operation and the params.yaml option (`option`) that allows it."""
    try:
        yield
    except RuntimeError as e:
        text = str(e)
        if "does not have a deterministic implementation" not in text:
            raise
        op = text.split(" does not have a deterministic implementation")[0].strip()
        raise NondeterministicOpError(
            f"{op} has no deterministic kernel on this device, and deterministic mode is on. "
            f"Set `{option}: false` in params.yaml to allow it: the job then runs, and the same "
            "machine may give slightly different numbers on every run (README, Reproducibility)"
        ) from None


def resume_state(model_path, params: dict, inputs, minutes=10):
    """The resume state of the training job that writes `model_path`: `<model_path>.resume`,
    fingerprinted by the job's params and input files (pwprune.stages.jobs.fingerprint), refreshed
    inside an epoch at most every `minutes` (resources.<stage>.resume_minutes)."""
    from pwprune.stages.jobs import fingerprint
    from pwprune.train import Resume

    return Resume(f"{model_path}.resume", fingerprint(params, inputs), every_seconds=60.0 * float(minutes))


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


def train_loader(prepared, batch_size, seed, augment, shuffle=True, arch=None, device="cpu"):
    """Batches of the train split (pwprune.data.dataset.Batches), shuffled with `seed` and
    augmented from a generator of their own; x arrives on `device`. arch: the model's arch dict
    (models.arch_dict); its input_mean/input_std, when present, replace the data's train
    mean/std. The same for eval_loader."""
    from pwprune.data.dataset import Batches

    return Batches(
        prepared.splits["train"],
        _input_meta(prepared, arch),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        augment=augment,
        device=device,
    )


def eval_loader(prepared, split, batch_size, arch=None, device="cpu"):
    from pwprune.data.dataset import Batches

    return Batches(prepared.splits[split], _input_meta(prepared, arch), batch_size, device=device)


def make_teacher(augment, dense_model, teacher_path, device, logits=None):
    """Cached dense outputs for non-augmented data (computed once, at dense training: read from
    `teacher_path`, or given in memory as `logits`, dense_teacher_logits' result); a frozen copy of
    the dense model when augmentation makes every view new."""
    from pwprune.loss import CachedTeacher, FrozenTeacher

    if augment:
        return FrozenTeacher(dense_model.to(device))
    return CachedTeacher((load_tensor(teacher_path) if logits is None else logits).to(device))


def dense_teacher_logits(model, prepared, seed, arch, device, batch_size=256):
    """The dense model's logits on every training sample, row i = sample i (pwprune.loss.
    teacher_outputs over the unshuffled, unaugmented train split): what the PW loss and CEAG's
    baseline read through a CachedTeacher. The dense training stage saves them beside the model;
    pwprune.api computes them in memory."""
    from pwprune.loss import teacher_outputs

    loader = train_loader(prepared, batch_size, seed, augment=False, shuffle=False, arch=arch, device=device)
    return teacher_outputs(model, loader, device)


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
        raise ValueError(
            f"{path}: cannot load teacher outputs ({type(e).__name__}: {e}); delete it and rerun the dense training job"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != "pwprune-teacher":
        raise ValueError(f"{path}: not a pwprune teacher-output file; delete it and rerun the dense training job")
    return obj["logits"]


def make_loss(kind, pw):
    from pwprune.loss import make_loss

    return make_loss(kind, **(pw or {}))


def fit(model, prepared, loop, loss_fn, teacher, seed, device, context, log, arch=None, numerics=None, resume=None):
    """pwprune.train.fit with one `train`/`finetune` config section; `numerics` (the job's
    numerics param) gives the precision and memory layout, `resume` the job's resume state."""
    numerics = numerics or {}
    from pwprune.train import fit

    loader = train_loader(
        prepared, loop["batch_size"], seed, augment=loop.get("augment", False), arch=arch, device=device
    )
    return fit(
        model,
        loader,
        epochs=loop["epochs"],
        lr=loop["lr"],
        weight_decay=loop.get("weight_decay", 0.0),
        loss_fn=loss_fn,
        teacher=teacher,
        device=device,
        optimizer=loop.get("optimizer", "adamw"),
        scheduler=loop.get("scheduler", "cosine"),
        log=log,
        context=context,
        on_divergence=loop.get("on_divergence", "raise"),
        milestones=loop.get("milestones"),
        lr_decay=loop.get("lr_decay", 0.1),
        backbone_lr_scale=loop.get("backbone_lr_scale", 1.0),
        backbone_lr_growth=loop.get("backbone_lr_growth", 1.0),
        precision=numerics.get("precision", "fp32"),
        channels_last=bool(numerics.get("channels_last", False)),
        resume=resume,
        validate=validation(prepared, loop["batch_size"], arch, device),
        early_stopping=loop.get("early_stopping"),
    )


def validation(prepared, batch_size, arch=None, device="cpu"):
    """The after-each-epoch check of pwprune.train.fit on the prepared data's "val" split (None
    without one): the model's cross-entropy and accuracy, overall and per group. Eval mode, no
    grad, and no random draw, so training's weights do not depend on it."""
    if "val" not in (prepared.meta.get("splits") or []):
        return None
    import torch.nn.functional as F

    from pwprune.inference import predict

    names = [str(n) for n in prepared.meta["group_names"]]

    def validate(model):
        logits, y, g = predict(model, eval_loader(prepared, "val", batch_size, arch, device), device)
        if logits.ndim == 1:
            losses = F.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
            correct = (logits > 0).long() == y
        else:
            losses = F.cross_entropy(logits, y, reduction="none")
            correct = logits.argmax(1) == y
        groups = []
        for i, name in enumerate(names):
            m = g == i
            n = int(m.sum())
            groups.append(
                {
                    "group": name,
                    "n": n,
                    "accuracy": float(correct[m].double().mean()) if n else float("nan"),
                    "loss": float(losses[m].double().mean()) if n else float("nan"),
                }
            )
        return {
            "loss": float(losses.double().mean()),
            "accuracy": float(correct.double().mean()),
            "groups": groups,
        }

    return validate
