"""pwprune: fair network pruning with the performance weighted (PW) loss.

`import pwprune` stays cheap (no torch import) so the Snakefile can use the light modules
(`pwprune.config`) at start-up; the torch-backed names below load on first use.
"""

__version__ = "0.1.0"

_LAZY = {
    "PerformanceWeightedLoss": "pwprune.loss",
    "make_loss": "pwprune.loss",
    "teacher_outputs": "pwprune.loss",
    "CachedTeacher": "pwprune.loss",
    "FrozenTeacher": "pwprune.loss",
    "build_model": "pwprune.models",
    "prune_to_target": "pwprune.pruning",
    "save_checkpoint": "pwprune.checkpoint",
    "load_checkpoint": "pwprune.checkpoint",
    "fit": "pwprune.train",
    "compress": "pwprune.api",
    "CompressionResult": "pwprune.api",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pwprune' has no attribute {name!r}")
