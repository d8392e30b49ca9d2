"""Checkpoints of dense and pruned models.

A checkpoint holds only plain data (tensors, str, int, float, bool, None, list, tuple, dict), so
it loads with torch.load(weights_only=True) and loading never runs code from the file:

    {"format": "pwprune-checkpoint", "version": 1, "arch": models.arch_dict(...),
     "history": Torch-Pruning pruning history ([] for a dense model), "state_dict": ..., "meta": {...}}

A pruned model's state dict does not fit a freshly built model, so loading rebuilds the dense
architecture from `arch`, replays the pruning history through Torch-Pruning's dependency graph
(each pruned attention's head count follows from the columns its entry removes:
pwprune.attention.replay), and only then loads the weights (strict).
"""

import pickle
import pickletools
from pathlib import Path

import torch
import torch.nn as nn

from pwprune.fileio import atomic_open

FORMAT = "pwprune-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a loadable pwprune checkpoint; the message names the file and the fix."""


def _check_plain(value, where: str) -> None:
    """Refuse at save time what weights_only loading would refuse later (numpy scalars, objects)."""
    # exact types: numpy scalars subclass float/int but weights_only loading refuses them
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, f"{where} key")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise ValueError(
        f"{where}: {type(value).__name__} cannot be stored in a checkpoint; convert it "
        f"to a plain Python value (int, float, str, list, dict) or a tensor"
    )


def _plain_history(history) -> list:
    """Torch-Pruning records [module_name, is_out_channel_pruning, indices]; indices may be
    numpy or tensor ints, which weights_only loading refuses, so store plain Python values."""
    return [[str(name), bool(out), [int(i) for i in idxs]] for name, out, idxs in (history or [])]


def save_checkpoint(path, model: nn.Module, arch: dict, history=None, meta=None, trajectory=None) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves any older file at `path` intact
    and never a partial file under that name. Non-finite weights are refused (ValueError).
    `trajectory`: the plain-data state of a Taylor trajectory (pwprune.pruning.trajectory) that
    a larger target's pruning continues from; stored beside the model, ignored when loading it.
    meta gets `environment`, the numeric environment this process computed in
    (pwprune.environment.numeric_environment, on the model's device), unless it already has one."""
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(
            f"refusing to save {path}: non-finite values in {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''} (the training run diverged)"
        )
    meta = dict(meta or {})
    if "environment" not in meta:
        from pwprune.environment import numeric_environment

        device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
        meta["environment"] = numeric_environment(device)
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "arch": dict(arch),
        "history": _plain_history(history),
        "state_dict": state,
        "meta": meta,
    }
    if trajectory is not None:
        ckpt["trajectory"] = trajectory
        _check_plain(trajectory, "trajectory")
    _check_plain(ckpt["arch"], "arch")
    _check_plain(ckpt["meta"], "meta")

    with atomic_open(path) as f:
        torch.save(ckpt, f)


def load_checkpoint(path, device="cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode on `device`, info with arch, history, meta). Raises CheckpointError
    for a missing, corrupt, foreign, unsafe or mismatching file."""
    path = Path(path)
    regenerate = "delete it and rerun the step that writes it (e.g. `snakemake <that file>`)"
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint file; run the step that writes it first (e.g. `snakemake {path}`)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" in _reason(e).lower() or _calls_code(path):
            raise CheckpointError(
                f"{path}: refusing to load, the file is not plain data that weights_only loading "
                f"accepts ({_reason(e)}) and unpickling it could run code. pwprune checkpoints hold "
                f"only tensors and plain values; never load this file with weights_only switched off; "
                f"{regenerate}"
            ) from None
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_reason(e)}); {regenerate}") from None
    except Exception as e:  # truncated zip, random bytes, empty file: torch raises many types
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {_reason(e)}); {regenerate}"
        ) from None

    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        kind = (
            "a bare state dict"
            if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
            else f"a {type(ckpt).__name__}"
        )
        raise CheckpointError(
            f"{path}: not a pwprune checkpoint (it holds {kind}); write checkpoints "
            f"with pwprune.checkpoint.save_checkpoint, or {regenerate}"
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')!r} is not supported "
            f"(this pwprune reads version {VERSION}); {regenerate}"
        )
    missing = [k for k in ("arch", "history", "state_dict", "meta") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}; {regenerate}")

    from pwprune import models  # lazy: models may pull in torchvision

    arch, history = ckpt["arch"], ckpt["history"]
    try:
        model = models.build_from_arch(arch)
        if history:
            import torch_pruning as tp

            from pwprune.attention import replay, tracing

            # tracing needs autograd, even if the caller is in no_grad; per-head tables stay out of the graph
            with torch.enable_grad(), tracing():
                dg = tp.DependencyGraph().build_dependency(
                    model, example_inputs=models.example_input(arch), verbose=False
                )
                replay(dg, model, history)  # load_pruning_history, attention's head counts too
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except Exception as e:
        raise CheckpointError(
            f"{path}: the weights do not fit architecture {arch!r} with "
            f"{len(history)} pruning steps ({type(e).__name__}: {_reason(e)}); "
            f"the file was written for another model; {regenerate}"
        ) from None
    return model.to(device).eval(), {"arch": arch, "history": history, "meta": ckpt["meta"]}


def _reason(e: BaseException) -> str:
    """The informative line of a torch.load error, without its boilerplate advice (which, for
    weights_only failures, suggests switching weights_only off: exactly what we must not do)."""
    boilerplate = ("weights only load failed", "check the documentation", "please file an issue")
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    useful = [l for l in lines if not l.lower().startswith(boilerplate)]
    # two lines: load_state_dict's first line only says "Error(s) in loading state_dict for X:"
    return " ".join((useful or lines or [type(e).__name__])[:2])[:300]


def _calls_code(path) -> bool:
    """Is the file a well-formed pickle that imports or calls objects? pickletools only parses
    opcodes, it runs nothing; this tells a hostile pickle from random bytes in the message."""
    code_ops = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}
    try:
        with open(path, "rb") as f:
            # the whole stream must parse, up to its STOP: random bytes often begin with a byte
            # that happens to be a code opcode (STACK_GLOBAL is 0x93) and then break off
            names = [op.name for op, _, _ in pickletools.genops(f)]
    except Exception:
        return False
    return any(name in code_ops for name in names)
