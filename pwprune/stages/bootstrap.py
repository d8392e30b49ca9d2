"""Every run's pruned and fine-tuned model against its dense model -> bootstrap intervals over
the test samples of each fairness metric (pwprune.bootstrap; docs/interfaces.md)."""

from __future__ import annotations

from pwprune.stages.jobs import write_csv

BOOTSTRAP_COLUMNS = [
    "experiment",
    "split",
    "stage",
    "method",
    "loss",
    "target_reduction",
    "seed",
    "metric",
    "estimate",
    "lo",
    "hi",
]


def predictions(outputs):
    """A checkpoint's outputs (pwprune.outputs) -> what pwprune.bootstrap resamples: per split the
    predicted class, label and group of each sample, the group count, whether the task is binary
    (a single logit) and whether the fine-tuning diverged."""
    from pwprune.metrics import predicted_classes

    return {
        "splits": {
            s: {"pred": predicted_classes(v["logits"]), "y": v["y"], "g": v["g"]} for s, v in outputs["splits"].items()
        },
        "n_groups": len(outputs["group_names"]),
        "binary": all(v["logits"].ndim == 1 for v in outputs["splits"].values()),
        "diverged": outputs["diverged"],
    }


def bootstrap_stage(table, out, log=print):
    """Every run's pruned and fine-tuned model against its dense model -> `out`, a CSV of
    BOOTSTRAP_COLUMNS: per trial, split and metric, its value and its 95% bootstrap interval over
    test samples (pwprune.bootstrap.trial_intervals; NaN for a diverged fine-tuning)."""
    import math

    import pandas as pd

    from pwprune.bootstrap import METRICS, RESAMPLES, trial_intervals
    from pwprune.outputs import read_outputs

    cache = {}

    def preds(path):
        if path not in cache:
            cache[path] = predictions(read_outputs(path))
        return cache[path]

    rows = []
    for run in table:
        dense = preds(run["dense"])
        for stage in ("pruned", "finetuned"):
            model = preds(run[stage])
            for split, p in model["splits"].items():
                if model["diverged"]:
                    found = {m: (math.nan, math.nan, math.nan) for m in METRICS}
                else:
                    found = trial_intervals(p, dense["splits"][split], model["n_groups"], model["binary"])
                for metric, (est, lo, hi) in found.items():
                    rows.append(
                        {
                            "experiment": run["exp"],
                            "split": split,
                            "stage": stage,
                            "method": run["method"],
                            "loss": run["label"],
                            "target_reduction": float(run["target"]),
                            "seed": int(run["seed"]),
                            "metric": metric,
                            "estimate": est,
                            "lo": lo,
                            "hi": hi,
                        }
                    )
    write_csv(out, pd.DataFrame(rows, columns=BOOTSTRAP_COLUMNS))
    log(f"bootstrap: {RESAMPLES} group-stratified resamples of the test samples, {len(rows)} intervals -> {out}")
