"""Shared test helpers (plain functions and constants, no fixtures): a temporary copy of the
repository to run the real Snakemake CLI in, and checkpoint comparisons.

The fixtures live in tests/conftest.py; tests, tests/faults.py and conftest.py import these
with `from helpers import ...` (pytest puts tests/, which has no __init__.py, on sys.path;
tests/faults.py inserts it itself). Benchmarks do not use them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a run produces or a developer has locally; never part of a copy.
_IGNORE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "results",
    "logs",
    ".snakemake",
    "__pycache__",
    ".pytest_cache",
    "*.egg-info",
    "out",
    ".dvc",
    "prepared",
    "raw",
)


def copy_repo(dest: Path) -> Path:
    """The repository's source (no results, no data, no git) copied to dest."""
    shutil.copytree(REPO, dest, ignore=_IGNORE, dirs_exist_ok=True)
    for d in ("data", "results"):
        (dest / d).mkdir(exist_ok=True)
    return dest


def snakemake(cwd: Path, *args: str, check: bool = True, timeout: int = 900, env=None):
    """Run the real snakemake CLI of this environment in cwd; returns CompletedProcess."""
    cmd = [str(BIN / "snakemake"), *args]
    run_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=run_env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def completed_run(tmp_path_factory, name: str, *args: str) -> Path:
    """A fresh copy of the repository in which `snakemake --cores 2 *args` has run."""
    root = copy_repo(tmp_path_factory.mktemp(name) / "repo")
    snakemake(root, *args, "--cores", "2")
    return root


def checkpoint_state(path):
    """The state dict of a pwprune checkpoint, loaded the way the pipeline loads it."""
    from pwprune.checkpoint import load_checkpoint

    return load_checkpoint(path)[0].state_dict()


def largest_change(a, b) -> float:
    """Two state dicts with the same tensors (names and shapes): their largest absolute difference."""
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def reversed_keys(node):
    """The same YAML data with every mapping's keys in reverse order, at every depth."""
    if isinstance(node, dict):
        return {k: reversed_keys(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [reversed_keys(v) for v in node]
    return node
