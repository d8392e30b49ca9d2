"""DVC's view of the results: a small JSON of headline numbers for `dvc metrics show/diff`.

DVC metrics must be JSON/YAML/TOML and are compared key by key between commits, so this keeps
only a few numbers per (experiment, method, FLOP reduction): the CE and PW fairness gaps after
fine-tuning, their difference and the accuracies, on the test split, read from
results/summary.csv (pwprune.summary.write_summary), and the summary's diagnostics as top-level
keys ("finetuning_converged", pwprune.convergence). The full tables stay CSV (DVC plots).
"""

from __future__ import annotations

import json
import math

from pwprune.fileio import atomic_open

HEADLINE_COLUMNS = ("gap_ce", "gap_pw", "gap_diff", "acc_ce", "acc_pw")


def _number(v):
    v = float(v)
    return None if math.isnan(v) else round(v, 6)


def _reduction_key(target) -> str:
    # DVC flattens nested keys with '.', so the key avoids a decimal point: 0.875 -> "r875".
    return "r" + f"{float(target):.6f}".split(".")[1].rstrip("0").ljust(1, "0")


def headline(summary_csv, split: str = "test") -> dict:
    """{experiment: {method: {r<reduction>: {gap_ce, gap_pw, gap_diff, acc_ce, acc_pw}}}}."""
    import pandas as pd

    df = pd.read_csv(summary_csv)
    missing = {"experiment", "split", "method", "target_reduction", *HEADLINE_COLUMNS} - set(df.columns)
    if missing:
        raise ValueError(f"{summary_csv}: missing columns {sorted(missing)} (written by pwprune.summary)")
    if split in set(df["split"]):
        df = df[df["split"] == split]
    out: dict = {}
    for row in df.itertuples(index=False):
        cell = out.setdefault(str(row.experiment), {}).setdefault(str(row.method), {})
        cell[_reduction_key(row.target_reduction)] = {c: _number(getattr(row, c)) for c in HEADLINE_COLUMNS}
    return out


def write_headline(summary_csv, out_json, split: str = "test", extra=None) -> dict:
    """headline() plus the top-level keys of `extra` (the summary's diagnostics, e.g.
    "finetuning_converged": true / false, null when nothing could be judged), written atomically."""
    data = headline(summary_csv, split)
    for key, value in (extra or {}).items():
        if key in data:
            raise ValueError(f"headline key {key!r} is also an experiment's name; rename the experiment")
        data[key] = value
    with atomic_open(out_json, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return data
