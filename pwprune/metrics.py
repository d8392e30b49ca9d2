"""Per-group metrics of one model, its size, MACs and latency (the evaluate stage's measures;
fairness against the dense model is computed on the tidy table, pwprune.summary.fairness).

Accuracy and AUROC are computed per group and for `all`. Binary tasks use a single logit (class 1 iff
logit > 0); multi-class tasks use argmax and one-vs-rest macro AUROC.
"""

import copy
import math
import statistics
import time

import numpy as np

# torch is imported inside the functions that need it: the plotting/summary job
# uses `fairness` and must not pay for importing torch.


def predict(model, loader, device="cpu"):
    """Run `model` over a loader of (x, y, g, idx) batches -> (logits, labels, groups) on CPU.

    Single-logit outputs come back as shape (N,), multi-class as (N, C). Rows are in loader
    order; the model's train/eval mode is restored afterwards.
    """
    import torch

    from pwprune.rows import RowBuffer, expected_rows

    was_training = model.training
    model.eval()
    logits, labels, groups = (RowBuffer(expected_rows(loader)) for _ in range(3))
    try:
        with torch.no_grad():
            for x, y, g, _idx in loader:
                out = model(x.to(device)).float().cpu()
                if out.ndim == 2 and out.shape[1] == 1:
                    out = out[:, 0]
                logits.append(out)
                labels.append(y.cpu().long())
                groups.append(g.cpu().long())
    finally:
        model.train(was_training)
    if not len(logits):
        raise ValueError("predict: loader yielded no batches; evaluate a non-empty split")
    return logits.tensor(), labels.tensor(), groups.tensor()


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


def count_macs_params(model, example_input):
    """(MACs per sample, parameter count) via Torch-Pruning's counter, on a CPU copy so the
    caller's model (possibly on GPU, possibly in train mode) is untouched."""
    import torch_pruning as tp  # lazy: only evaluation needs it

    cpu_model = copy.deepcopy(model).cpu().eval()
    macs, params = tp.utils.count_ops_and_params(cpu_model, example_input.detach().cpu())
    return int(macs), int(params)


def latency_ms(model, example_input, repeats=20, warmup=5):
    """Median CPU latency per sample in milliseconds.

    The model runs in eval mode without grad on CPU; the batch is `example_input` as given, and the
    time of one forward pass is divided by its batch size. Warmup passes are discarded (allocator
    and kernel selection), the median of `repeats` resists the noise of a shared machine. The model's
    device and train/eval mode are restored afterwards. Thread count is whatever torch uses.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"latency_ms: repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    import torch

    params = list(model.parameters()) + list(model.buffers())
    device = params[0].device if params else torch.device("cpu")
    was_training = model.training
    x = example_input.detach().cpu()
    try:
        model.cpu().eval()
        with torch.no_grad():
            for _ in range(warmup):
                model(x)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
    finally:
        model.to(device)
        model.train(was_training)
    return 1000.0 * statistics.median(times) / x.shape[0]
