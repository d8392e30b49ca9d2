"""Bootstrap intervals over test samples for one trial: a model against its dense model.

Seeds give the intervals of the summary when there are several; a single run (one seed, or the
one fine-tuning of a costly setting) has no spread over seeds, but its fairness metrics still have
a sampling error: the test set is a sample. `trial_intervals` resamples the test set and
recomputes every metric of pwprune.summary.FIELD_METRICS on each resample, for the model and its
dense model *on the same resample* (the drops are paired differences, so their error is not the
sum of two independent ones).

Resampling is stratified by group: each group's samples are drawn with replacement from that
group, keeping its size, as the group sizes are fixed by the test set's design, not random. The
interval is the percentile interval of the resampled values. numpy only (the summary job must
not import torch).
"""

from __future__ import annotations

import math

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
METRICS = ("accuracy", "worst_group_accuracy", "worst_drop", "max_disparity", "drop_std", "eod")


def _group_stats(pred, y, g, n_groups, draws):
    """Per resample and group: (correct, positives, true positives, negatives, false positives)
    counts, each an array (B, G); draws[k] holds the resampled indices of group k, shape (B, n_k)."""
    correct = (pred == y).astype(np.int32)
    pos = (y == 1).astype(np.int32)
    tp = ((pred == 1) & (y == 1)).astype(np.int32)
    neg = (y == 0).astype(np.int32)
    fp = ((pred == 1) & (y == 0)).astype(np.int32)
    out = []
    for a in (correct, pos, tp, neg, fp):
        out.append(np.stack([a[draws[k]].sum(axis=1) for k in range(n_groups)], axis=1))
    return out


def _metrics(model_stats, dense_stats, sizes, binary):
    """Every metric per resample (arrays of length B) from the counts of _group_stats."""
    correct, pos, tp, neg, fp = model_stats
    acc = correct / sizes
    dense_acc = dense_stats[0] / sizes
    overall = correct.sum(axis=1) / sizes.sum()
    dense_overall = dense_stats[0].sum(axis=1) / sizes.sum()
    drops = dense_acc - acc
    out = {
        "accuracy": overall,
        "worst_group_accuracy": acc.min(axis=1),
        "worst_drop": drops.max(axis=1),
        "max_disparity": drops.max(axis=1) - (dense_overall - overall),
        "drop_std": drops.std(axis=1, ddof=0),
    }
    if binary:
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr, fpr = tp / pos, fp / neg
        spreads = [np.nanmax(r, axis=1) - np.nanmin(r, axis=1) for r in (tpr, fpr) if np.isfinite(r).any()]
        out["eod"] = np.nanmax(np.stack(spreads), axis=0) if spreads else np.full(len(overall), math.nan)
    else:
        out["eod"] = np.full(len(overall), math.nan)
    return out


def trial_intervals(model, dense, n_groups, binary, resamples=RESAMPLES, seed=SEED, level=LEVEL):
    """{metric: (estimate, lo, hi)} of one model against its dense model on one split.

    model, dense: dicts of per-sample arrays `pred`, `y`, `g` in the same sample order (the
    evaluation's; the dense model's `y` and `g` must equal the model's). binary: a single-logit
    task (eod is defined); else eod is NaN. The estimate is the metric on the whole split; lo, hi
    the (1 - level) / 2 and (1 + level) / 2 percentiles over `resamples` group-stratified
    resamples drawn from `seed` (the same draws for the model and the dense model). Groups without
    a test sample are left out, as in pwprune.summary.fairness."""
    y, g = np.asarray(model["y"]), np.asarray(model["g"])
    if not (np.array_equal(y, dense["y"]) and np.array_equal(g, dense["g"])):
        raise ValueError(
            "trial_intervals: the model's and the dense model's predictions are not over the same "
            "samples in the same order; evaluate both on the same prepared split"
        )
    present = [k for k in range(n_groups) if np.any(g == k)]
    members = [np.flatnonzero(g == k) for k in present]
    sizes = np.array([len(m) for m in members], dtype=float)
    identity = [m[None, :] for m in members]
    rng = np.random.default_rng(seed)
    draws = [m[rng.integers(0, len(m), size=(resamples, len(m)))] for m in members]
    pm, pd_ = np.asarray(model["pred"]), np.asarray(dense["pred"])
    point = _metrics(
        _group_stats(pm, y, g, len(present), identity), _group_stats(pd_, y, g, len(present), identity), sizes, binary
    )
    boot = _metrics(
        _group_stats(pm, y, g, len(present), draws), _group_stats(pd_, y, g, len(present), draws), sizes, binary
    )
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {}
    for m in METRICS:
        est = float(point[m][0])
        v = boot[m][np.isfinite(boot[m])]
        lo, hi = (float(x) for x in np.percentile(v, q)) if len(v) and math.isfinite(est) else (math.nan, math.nan)
        out[m] = (est, lo, hi)
    return out
