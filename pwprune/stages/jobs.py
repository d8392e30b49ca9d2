"""Job plumbing shared by every stage: the job's log, atomic writers, and the per-checkpoint
metrics file's columns. Torch-free, and free of model code: the report stages import it too
(pwprune.provenance)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import traceback
from pathlib import Path

from pwprune.fileio import atomic_open

# columns of a per-checkpoint metrics file (written by the evaluate stage); the tidy table's
# are pwprune.summary.TABLE_COLUMNS
METRIC_COLUMNS = [
    "stage",
    "split",
    "group",
    "n",
    "accuracy",
    "auroc",
    "tpr",
    "fpr",
    "degenerate",
    "params",
    "macs",
    "latency_ms",
    "achieved_reduction",
    "counted_layers",
    "environment",
]


def loaded_modules() -> list[str]:
    """The pwprune modules this process has imported (the job log's last line; a test holds it
    inside the rule's code hash, pwprune.provenance)."""
    return sorted(m for m in sys.modules if m == "pwprune" or m.startswith("pwprune."))


@contextlib.contextmanager
def job_log(path, exit_when_done=False):
    """Send the job's stdout/stderr (progress, warnings, tracebacks) to its log file; repeat the
    final error on the real stderr so it also shows in Snakemake's output. A finished job's log
    ends with the pwprune modules it ran.

    exit_when_done: end the process as soon as the job has succeeded (os._exit(0), after flushing
    the log), as the workflow scripts ask: every output is already closed and in place, and
    tearing down an interpreter that has imported torch takes ~0.8 s, a third of a short job's
    wall time (benchmarks/pipeline.py, job_overhead_s: the exit cases)."""
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
            print(f"pwprune modules loaded: {' '.join(loaded_modules())}", flush=True)
        except BaseException as e:
            traceback.print_exc(file=f)
            print(f"ERROR: {type(e).__name__}: {e}\n(full log: {path})", file=real_err, flush=True)
            raise
        finally:
            sys.stdout, sys.stderr = old
        f.flush()
    if exit_when_done:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def fingerprint(params: dict, inputs) -> str:
    """A job's identity for its resume state (pwprune.train.Resume): its params (the code hash
    among them) and its input files, each by content up to 256 MB and by size and modification
    time above that or inside a directory (a prepared dataset of many GB is not read at every
    start; Snakemake reruns the job when it is rewritten, and its times change then)."""
    import hashlib

    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=_jsonable).encode())
    for path in map(Path, inputs):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}".encode())
            if path.is_dir() or st.st_size > 256 * 2**20:
                h.update(str(st.st_mtime_ns).encode())
            else:
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(2**20), b""):
                        h.update(chunk)
    return h.hexdigest()


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


def read_job_metrics(path, required=METRIC_COLUMNS):
    """Read one checkpoint's metrics CSV, refusing one with missing columns (a foreign or
    truncated file)."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as e:  # empty or garbled file
        raise ValueError(f"{path}: cannot read metrics ({e}); delete it and rerun the job that produces it") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: metrics file lacks column(s) {', '.join(missing)}; it was not "
            "written by this pipeline version: delete it and rerun the job that "
            "produces it"
        )
    return df
