"""One checkpoint's per-sample predictions on each evaluation split: the evaluate stage writes
them beside its metrics, the bootstrap stage (pwprune.stages.bootstrap) reads them. One file
format, defined here only."""

from __future__ import annotations


def write_predictions(path, predictions, n_groups, diverged=False):
    """Per-sample predictions of one checkpoint, atomically, as an .npz: for each evaluation
    split `<split>.pred`, `<split>.y`, `<split>.g` (int64, in the evaluation's sample order),
    plus `splits`, `n_groups`, `binary` (a single-logit task: the equalised-odds difference is
    defined) and `diverged` (the rows are degenerate: no interval is computed from them)."""
    import numpy as np

    from pwprune.fileio import atomic_open

    arrays = {f"{s}.{k}": np.asarray(v[k], dtype=np.int64) for s, v in predictions.items() for k in ("pred", "y", "g")}
    binary = bool(predictions) and all(v["binary"] for v in predictions.values())
    with atomic_open(path, "wb") as f:
        np.savez(
            f,
            splits=np.array(list(predictions), dtype=str),
            n_groups=n_groups,
            binary=binary,
            diverged=diverged,
            **arrays,
        )


def read_predictions(path):
    """write_predictions' file -> {"splits": {split: {pred, y, g}}, "n_groups", "binary",
    "diverged"}; loaded without pickles (a shared file cannot run code)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        splits = [str(s) for s in z["splits"]]
        return {
            "splits": {s: {k: z[f"{s}.{k}"] for k in ("pred", "y", "g")} for s in splits},
            "n_groups": int(z["n_groups"]),
            "binary": bool(z["binary"]),
            "diverged": bool(z["diverged"]),
        }
