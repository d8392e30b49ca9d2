"""The numeric environment of a compute job: what, besides the code, the data and params.yaml,
decides a result's last bits. The library versions (torch, torchvision, Torch-Pruning), the
device and its model (CPU model; GPU name, CUDA and cuDNN versions), the thread count,
deterministic mode and the arithmetic precision (and whether CUDA may compute fp32 in TF32).

Every checkpoint stores it in its meta (pwprune.checkpoint.save_checkpoint) and every metrics row
carries its one-line form (`environment` column), so the summary can say which environments a
figure's numbers came from and warn when one comparison mixes them.

The same machine and configuration give bit-identical weights; another CPU model or GPU, or
other library versions, give numbers within the seed spread but not identical ones.

environment_id() and machine_id() are torch-free (the summary uses them)."""

from __future__ import annotations

import platform
from importlib import metadata

# the order of the one-line form; "threads" is last so machine_id can drop it
ID_KEYS = (
    "device_type",
    "device_model",
    "torch",
    "torchvision",
    "torch_pruning",
    "cuda",
    "cudnn",
    "deterministic",
    "precision",
    "tf32",
    "threads",
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's answer elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def numeric_environment(device, precision: str = "fp32") -> dict:
    """The environment this process computes in now, on `device` (a torch.device or its name):
    read from torch's live state (thread count, deterministic mode), not from the configuration,
    so it records what actually ran. Plain data (it goes into checkpoint meta)."""
    import torch

    device = torch.device(device)
    env = {
        "torch": str(torch.__version__),
        "torchvision": _version("torchvision"),
        "torch_pruning": _version("torch-pruning"),
        "device_type": device.type,
        "cpu_model": cpu_model(),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "threads": int(torch.get_num_threads()),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "precision": str(precision),
        "tf32": tf32_allowed(),
        "cuda": None,
        "cudnn": None,
        "gpu": None,
    }
    if device.type == "cuda":
        env["cuda"] = str(torch.version.cuda)
        env["cudnn"] = str(torch.backends.cudnn.version())
        env["gpu"] = torch.cuda.get_device_name(device)
    env["device_model"] = env["gpu"] if device.type == "cuda" else env["cpu_model"]
    return env


def tf32_allowed() -> bool:
    """Whether CUDA matmuls or cuDNN convolutions may compute fp32 in TF32 now (torch's per-operator
    fp32_precision, read through its fallbacks: an operator's "none" takes its backend's setting,
    then the global one; "none" throughout is IEEE fp32). Readable without a GPU; the jobs turn it
    off (pwprune.stages.inputs.set_tf32)."""
    import torch

    b = torch.backends

    def precision(op):
        for p in (op.fp32_precision, b.cudnn.fp32_precision, b.fp32_precision):
            if p != "none":
                return p
        return "ieee"

    return any(precision(op) == "tf32" for op in (b.cuda.matmul, b.cudnn.conv))


def environment_id(env: dict | None) -> str:
    """One line naming an environment, as the metrics table's `environment` column holds it, e.g.
    `cpu AMD EPYC 7B13 | torch 2.13.0+cpu | torchvision 0.28.0 | torch_pruning 1.6.0 |
    deterministic | fp32 | 2 threads`. "unrecorded" for a checkpoint written before environments
    were recorded."""
    if not env:
        return "unrecorded"
    parts = [f"{env.get('device_type', '?')} {env.get('device_model', '?')}"]
    for k in ("torch", "torchvision", "torch_pruning", "cuda", "cudnn"):
        if env.get(k) is not None:
            parts.append(f"{k} {env[k]}")
    parts.append("deterministic" if env.get("deterministic") else "nondeterministic")
    tf32 = env.get("device_type") == "cuda" and env.get("tf32")
    parts.append(str(env.get("precision", "fp32")) + (" (tf32 allowed)" if tf32 else ""))
    threads = env.get("threads")
    parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    return " | ".join(parts)


def machine_id(environment: str) -> str:
    """An environment's line without its thread count: what must agree between the stages of one
    comparison (each stage computes with its own configured thread count, by design)."""
    parts = str(environment).split(" | ")
    if parts and parts[-1].endswith(("thread", "threads")):
        parts = parts[:-1]
    return " | ".join(parts)
