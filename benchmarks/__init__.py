"""Performance figures for pwprune, measured side by side in one run and printed as ratios.

    python -m benchmarks                 every benchmark, as a table
    python -m benchmarks --json --quick  one JSON object per line; skip the default end-to-end run
    python -m benchmarks --only latency_speedup,pruning_time_s

Each area is one module of plain functions returning lists of result dicts (see `result`):
    loss_overhead.py  pw_overhead_cached, pw_overhead_on_the_fly
    pruning.py        latency_speedup, pruning_time_s, taylor_trajectory_saving
    pipeline.py       dry_run_s, job_overhead_s, default_run_s, startup_share
    memory.py         peak_rss_mb
    throughput.py     input_samples_s, train_samples_s
Figures are printed, never asserted: tests only check the format.

gpu_check.py has a CLI of its own, `python -m benchmarks.gpu_check`: every CUDA path (tests, the
smoke run, mixed precision, throughput) in one command and one report, for a lent GPU.
"""

from __future__ import annotations

import math
import sys

# name -> module that measures it (the module's `run(names, opts)` returns result dicts)
BENCHMARKS = {
    "pw_overhead_cached": "loss_overhead",
    "pw_overhead_on_the_fly": "loss_overhead",
    "latency_speedup": "pruning",
    "pruning_time_s": "pruning",
    "taylor_trajectory_saving": "pruning",
    "dry_run_s": "pipeline",
    "job_overhead_s": "pipeline",
    "default_run_s": "pipeline",
    "startup_share": "pipeline",
    "peak_rss_mb": "memory",
    "input_samples_s": "throughput",
    "train_samples_s": "throughput",
}


def result(name, value, unit, goal=None, met=None, **fields):
    """One figure: name, value (a float), unit, goal (text or None), met (bool or None: no goal
    or nothing to compare), plus the fields that identify the case."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark name {name!r}; valid: {', '.join(BENCHMARKS)}")
    value = float(value)
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "goal": goal,
        "met": None if met is None or math.isnan(value) else bool(met),
        **fields,
    }


def log(*args):
    """Progress goes to stderr so stdout stays one JSON object per line."""
    print(*args, file=sys.stderr, flush=True)
