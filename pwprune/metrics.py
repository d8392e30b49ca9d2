"""Per-group metrics of one model from its outputs, without the model (fairness against the dense
model is computed on the tidy table, pwprune.summary.fairness; what needs the model, its outputs,
MACs and latency, is pwprune.inference).

Accuracy and AUROC are computed per group and for `all`. Binary tasks use a single logit (class 1 iff
logit > 0); multi-class tasks use argmax and one-vs-rest macro AUROC.
"""

import math

import numpy as np

# torch is imported inside the functions that need it: the plotting/summary job
# uses `fairness` and must not pay for importing torch.


def _numpy(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _scores_and_predictions(logits):
    # single logit: the logit itself ranks samples for AUROC; multi-class: softmax probabilities,
    # as sklearn's one-vs-rest AUROC expects (logits would rank differently per class)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim == 1:
        with np.errstate(invalid="ignore"):
            return logits, (logits > 0).astype(np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p = p / p.sum(axis=1, keepdims=True)
    return p, np.argmax(logits, axis=1).astype(np.int64)


def predicted_classes(logits):
    """The class each sample is predicted as (int64): logit > 0 for a single logit, else argmax."""
    return _scores_and_predictions(_numpy(logits))[1]


def _binary_auroc(positive, scores):
    """AUROC as the Mann-Whitney statistic with average ranks for ties (what sklearn's
    roc_auc_score computes), in numpy: importing sklearn would add ~1 s to every pipeline job."""
    order = np.argsort(scores, kind="mergesort")
    _, inverse, counts = np.unique(scores[order], return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    ranks = np.empty(len(scores))
    ranks[order] = ((end - counts + 1 + end) / 2)[inverse]  # mean of the 1-based ranks of each tie
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auroc(scores, y):
    """Binary AUROC from a score vector, or one-vs-rest macro AUROC from (N, C) probabilities.

    NaN when undefined: empty, only one class present, or non-finite scores (a diverged model).
    For multi-class, the macro average runs over classes that are present with both positives and
    negatives, which equals sklearn's `multi_class="ovr"` macro AUROC when every class is present.
    """
    if len(y) == 0 or len(np.unique(y)) < 2 or not np.all(np.isfinite(scores)):
        return math.nan
    if scores.ndim == 1:
        return _binary_auroc(y == 1, scores)
    aucs = [_binary_auroc(y == c, scores[:, c]) for c in range(scores.shape[1]) if 0 < np.sum(y == c) < len(y)]
    return float(np.mean(aucs)) if aucs else math.nan


def _class_auroc(scores, y, c):
    """One-vs-rest AUROC of class c over the whole split: its probability (or, for a single logit,
    +-logit) ranks class c against every other sample; NaN when the class is absent or alone, or the
    scores are not finite. = sklearn's roc_auc_score(y, p, multi_class="ovr", average=None)[c]."""
    positive = y == c
    if not 0 < positive.sum() < len(y) or not np.all(np.isfinite(scores)):
        return math.nan
    score = (scores if c == 1 else -scores) if scores.ndim == 1 else scores[:, c]
    return _binary_auroc(positive, score)


def group_metrics(logits, labels, groups, group_names, groups_are_classes=False):
    """Rows `{group, n, accuracy, auroc, tpr, fpr, degenerate}` for each group (in `group_names`
    order, group id = position) and then `all`.

    tpr, fpr: for a binary task (a single logit), the group's true-positive rate P(pred 1 | y 1)
    and false-positive rate P(pred 1 | y 0), the rates whose spread over groups is the
    equalised-odds difference (pwprune.summary.equalised_odds_difference); NaN for a multi-class
    task, or when the group has no sample of that label.

    A group's AUROC is computed over its own samples, except with `groups_are_classes` (the groups
    are the classes, group id = label, as CIFAR-10's; the prepared data's meta says so): a group
    holds one class only, so its AUROC is that class's one-vs-rest AUROC over the whole split, as
    the authors report it (prune/evaluate.py:16-19, roc_auc_score(..., multi_class='ovr',
    average=None)). Labels that differ from the groups are then refused (ValueError).

    `degenerate` is a property of the model, not of a group: True when it predicts one class for
    every sample of the whole evaluated split. It is repeated on every row. (Per group it would be
    meaningless: with groups = classes, a perfect model predicts one class per group.)
    """
    scores, pred = _scores_and_predictions(_numpy(logits))
    y = _numpy(labels).astype(np.int64).reshape(-1)
    g = _numpy(groups).astype(np.int64).reshape(-1)
    if not (len(pred) == len(y) == len(g)):
        raise ValueError(
            f"group_metrics: logits ({len(pred)}), labels ({len(y)}) and groups "
            f"({len(g)}) must have the same number of samples"
        )
    if len(g) and (g.min() < 0 or g.max() >= len(group_names)):
        raise ValueError(
            f"group_metrics: group ids span {g.min()}..{g.max()} but group_names "
            f"has {len(group_names)} entries; pass one name per group id"
        )
    if groups_are_classes and not np.array_equal(y, g):
        raise ValueError(
            f"group_metrics: groups_are_classes, but {int(np.sum(y != g))} of {len(y)} samples "
            "have a group id other than their label; pass groups_are_classes=False"
        )
    degenerate = bool(len(pred) > 0 and len(np.unique(pred)) == 1)
    binary = scores.ndim == 1
    rows = []
    masks = [(str(name), g == i) for i, name in enumerate(group_names)]
    masks.append(("all", np.ones(len(y), dtype=bool)))
    for i, (name, m) in enumerate(masks):
        n = int(m.sum())
        acc = float(np.mean(pred[m] == y[m])) if n else math.nan
        per_class = groups_are_classes and i < len(group_names)
        auroc = _class_auroc(scores, y, i) if per_class else _auroc(scores[m], y[m])
        tpr, fpr = _rates(pred[m], y[m]) if binary else (math.nan, math.nan)
        rows.append(
            {"group": name, "n": n, "accuracy": acc, "auroc": auroc, "tpr": tpr, "fpr": fpr, "degenerate": degenerate}
        )
    return rows


def _rates(pred, y):
    """(true-positive rate, false-positive rate) of binary predictions; NaN where the label is absent."""
    pos, neg = y == 1, y == 0
    tpr = float(np.mean(pred[pos] == 1)) if pos.any() else math.nan
    fpr = float(np.mean(pred[neg] == 1)) if neg.any() else math.nan
    return tpr, fpr


def checkpoint_rows(outputs):
    """A checkpoint's outputs (pwprune.outputs.read_outputs) -> its per-group rows on every
    evaluation split: group_metrics plus the checkpoint's stage, size, MACs, achieved reduction,
    counted layers and numeric environment (pwprune.stages.jobs.METRIC_COLUMNS, latency aside: it
    is measured on the model, by its own job). A fine-tuning that diverged holds the pruned
    weights: its rows are marked degenerate, with NaN metrics. Numpy only, no model."""
    rows = []
    for split, s in outputs["splits"].items():
        for r in group_metrics(
            s["logits"], s["y"], s["g"], outputs["group_names"], groups_are_classes=outputs["groups_are_classes"]
        ):
            rows.append(
                {
                    "stage": outputs["stage"],
                    "split": split,
                    **r,
                    "params": outputs["params"],
                    "macs": outputs["macs"],
                    "achieved_reduction": outputs["achieved_reduction"],
                    "counted_layers": outputs["counted_layers"],
                    "environment": outputs["environment"],
                }
            )
    if outputs["diverged"]:
        for r in rows:
            r.update(accuracy=math.nan, auroc=math.nan, tpr=math.nan, fpr=math.nan, degenerate=True)
    return rows
