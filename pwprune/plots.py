"""Figures for one experiment, drawn from results/metrics.csv and results/loss_shares.csv.

Every figure is written twice, `<out_stem>.png` (200 dpi) and `<out_stem>.pdf`. Figures are
built on matplotlib's object API (`Figure`, no pyplot), so nothing depends on a display or on
global backend state. Choices worth knowing when reading them:

- x axis = the *target* FLOP (MAC) reduction, so seeds average at the same x. The axis is spaced
  by log2 of the remaining compute: the paper's targets (1 - 1/2^k) come out evenly spaced
  instead of piling up against 100%.
- Curves are the `finetuned` stage; the pruned-before-fine-tuning stage is left out to keep the
  panels readable (it stays in metrics.csv).
- Points are the mean over seeds with a 95% t-interval; degenerate (collapsed) trials are in the
  mean and each is also drawn as a black x at its own value, so a collapse is visible.
- The main figures draw every fine-tuning label the experiment ran (CE, PW, CEAG; names order,
  only those present); the labels at the same x are nudged apart (side by side) so their
  intervals do not overlap. `comparison` puts every method and label on the same axes, one column
  per target. The ablation figure has its own labels; `loss_shares` is CE vs PW only (the paper's
  Figure 4).
- The ablation figure, when no ablation rows exist, is a placeholder page saying so (the
  workflow's output file still exists, and the report says plainly it was not run).
- `convergence` is drawn from results/convergence.csv instead (the fine-tuning jobs' validation
  curves): x = fine-tuning epoch; groups are colours and losses line styles there, since a panel
  holds every group of every loss (a placeholder page when no run recorded validation).
"""

import math
import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, NullLocator

from pwprune.convergence import CONVERGED, cell_verdicts
from pwprune.names import ABLATION_ONLY_LABELS, EXPERIMENT_LOSS_LABELS, FIGURES, MAIN_LABELS
from pwprune.summary import (
    aggregate_trials,
    clean_metrics,
    sort_methods,
    t_interval,
    trial_table,
    validate_metrics,
    validate_shares,
)

DPI = 200
# one palette for every figure (Okabe-Ito, colour-blind safe): CE blue, PW vermillion, CEAG bluish
# green. pw_weight shares CEAG's green: the ablation figure (the only one drawing pw_weight) never
# draws CEAG, and the main figures never draw pw_weight.
PALETTE = {
    "ce": "#0072B2",
    "pw": "#D55E00",
    "ceag": "#009E73",
    "pw_weight": "#009E73",
    "pw_correct": "#CC79A7",
    "pw_prune_only": "#E69F00",
    "pw_finetune_only": "#56B4E9",
    "dense": "#555555",
}
# how a comparison label (pwprune.names.LOSS_LABELS) is written in legends
LOSS_TITLES = {
    "ce": "CE",
    "pw": "PW",
    "ceag": "CEAG (constrained fine-tuning)",
    "pw_weight": "PW weighting only",
    "pw_correct": "PW correction only",
    "pw_prune_only": "PW in pruning phase only",
    "pw_finetune_only": "PW in fine-tuning phase only",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = ("-", "--", ":", "-.")
X_LABEL = "FLOP (MAC) reduction (%)"


def _present_labels(losses):
    """The experiment labels (pwprune.names.EXPERIMENT_LOSS_LABELS: ce, pw, ceag) among `losses`,
    in that order: what the main figures draw."""
    have = set(losses)
    return tuple(l for l in EXPERIMENT_LOSS_LABELS if l in have)


NO_ROWS = "No fine-tuned rows of {} in metrics.csv for this experiment.".format(
    "/".join(l.upper() for l in EXPERIMENT_LOSS_LABELS)
)


def _color(loss):
    return PALETTE.get(loss, "#999999")


def _label(loss, ablation=False):
    if ablation and loss == "pw":
        return "PW: weighting + correction, both phases"
    return LOSS_TITLES.get(loss, loss)


# --- x axis: target reduction in %, spaced by halvings of the remaining compute ---


def _fwd(x):
    return -np.log2(np.clip(1.0 - np.asarray(x, dtype=float) / 100.0, 1e-4, None))


def _inv(y):
    return 100.0 * (1.0 - np.power(2.0, -np.asarray(y, dtype=float)))


def _spacing(targets_pct):
    """Smallest distance between targets in axis space (1 = one halving) - sizes pads and nudges."""
    u = np.unique(_fwd(sorted(set(targets_pct))))
    return float(np.min(np.diff(u))) if len(u) > 1 else 1.0


def _reduction_axis(ax, targets_pct):
    ax.set_xscale("function", functions=(_fwd, _inv))
    ax.set_xticks(list(targets_pct))
    ax.set_xticklabels([f"{t:.4g}" for t in targets_pct], rotation=45 if len(targets_pct) > 4 else 0)
    ax.xaxis.set_minor_locator(NullLocator())
    lo, hi = _fwd(min(targets_pct)), _fwd(max(targets_pct))
    pad = 0.35 * _spacing(targets_pct)  # > the widest nudge (0.2) so no point falls off
    ax.set_xlim(_inv(lo - pad), _inv(hi + pad))
    ax.set_xlabel(X_LABEL)


def _dodge(targets_pct, i, k, spacing):
    """x positions for series i of k at the given targets, nudged apart in axis space."""
    # the series at one target spread over at most 0.4 of the gap between the panel's targets
    step = spacing * min(0.05, 0.4 / max(k - 1, 1))
    return _inv(_fwd(targets_pct) + (i - (k - 1) / 2) * step)


def _yerr(mean, half, bounds):
    """Asymmetric error bars clipped to the metric's range: a t-interval from 3 seeds can reach
    past 100% accuracy, which only misleads."""
    half = np.nan_to_num(np.asarray(half, dtype=float))
    lo, hi = bounds
    return np.vstack([mean - np.maximum(mean - half, lo), np.minimum(mean + half, hi) - mean])


def _series(
    ax, trials, value, loss, i, k, spacing, scale=100.0, marker="o", linestyle="-", label=None, bounds=(-np.inf, np.inf)
):
    """Mean ± 95% CI over seeds of `value` per target for one loss, and x marks for degenerate
    trials. `trials` holds trial_table rows, or per-group metric rows, for one panel; `bounds`
    (in plotted units) clip the interval."""
    t = trials[trials["loss"] == loss]
    if not len(t):
        return
    agg = aggregate_trials(t, ["target_reduction"], value)
    agg = agg[np.isfinite(agg["mean"])]
    if len(agg):
        x = _dodge(agg["target_reduction"].to_numpy() * 100, i, k, spacing)
        mean = agg["mean"].to_numpy() * scale
        ax.errorbar(
            x,
            mean,
            yerr=_yerr(mean, agg["ci95"].to_numpy() * scale, bounds),
            color=_color(loss),
            marker=marker,
            linestyle=linestyle,
            markersize=4,
            capsize=2,
            linewidth=1.3,
            label=label,
        )
    bad = t[t["degenerate"] & np.isfinite(t[value].astype(float))]
    if len(bad):
        ax.scatter(
            _dodge(bad["target_reduction"].to_numpy() * 100, i, k, spacing),
            bad[value] * scale,
            marker="x",
            color="black",
            s=30,
            linewidths=1.2,
            zorder=5,
        )


def _save(fig, out_stem):
    os.makedirs(os.path.dirname(os.path.abspath(out_stem)), exist_ok=True)
    paths = [f"{out_stem}.png", f"{out_stem}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    return paths


def _placeholder(title, message, out_stem):
    fig = Figure(figsize=(7, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    return _save(fig, out_stem)


def _legend(fig, handles, ncol=4):
    fig.legend(handles=handles, loc="outside lower center", ncol=min(ncol, len(handles)), frameon=False, fontsize=8)


def _ci_handle():
    return Line2D([], [], color="black", marker="|", linestyle="none", markersize=8, label="mean ± 95% CI over seeds")


def _degenerate_handle():
    return Line2D([], [], color="black", marker="x", linestyle="none", label="degenerate trial (included in mean)")


def _experiment_rows(metrics_df, experiment, split):
    d = metrics_df[(metrics_df["experiment"] == experiment) & (metrics_df["split"] == split)]
    if not len(d):
        have = sorted(set(zip(metrics_df["experiment"], metrics_df["split"])))
        raise ValueError(
            f"no metrics rows for experiment={experiment!r}, split={split!r}; the table has (experiment, split) {have}"
        )
    return d


def _panel_grid(fig, nrows, ncols, sharey="row"):
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return axes


# --- 1. per-group accuracy and AUROC vs FLOP reduction ---


def _group_performance(d, experiment, split, out_stem):
    fin = d[(d["stage"] == "finetuned") & d["loss"].isin(list(EXPERIMENT_LOSS_LABELS))]
    labels = _present_labels(fin["loss"])
    dense = d[d["stage"] == "dense"]
    methods = sort_methods(fin["method"])
    groups = [g for g in dict.fromkeys(d["group"]) if g != "all"]
    targets = sorted(set(fin["target_reduction"] * 100))
    if not methods:
        return _placeholder(
            f"{experiment}: per-group performance",
            NO_ROWS,
            out_stem,
        )
    fig = Figure(figsize=(max(4.0 * len(methods) + 1.0, 8.0), 6.8), layout="constrained")
    axes = _panel_grid(fig, 2, len(methods))
    metrics = (("accuracy", "accuracy (%)", 100.0), ("auroc", "AUROC (0–1)", 1.0))
    k = len(labels) * len(groups)
    for j, method in enumerate(methods):
        m = fin[fin["method"] == method]
        for r, (col, ylabel, scale) in enumerate(metrics):
            ax = axes[r, j]
            for gi, g in enumerate(groups):
                ref = dense[dense["group"] == g].groupby("seed")[col].mean().mean()
                if np.isfinite(ref):
                    ax.axhline(
                        ref * scale, color=PALETTE["dense"], linewidth=0.8, linestyle=LINESTYLES[gi % 4], alpha=0.8
                    )
                for li, loss in enumerate(labels):
                    rows = m[m["group"] == g]
                    _series(
                        ax,
                        rows,
                        col,
                        loss,
                        li * len(groups) + gi,
                        k,
                        _spacing(targets),
                        scale=scale,
                        marker=MARKERS[gi % len(MARKERS)],
                        linestyle=LINESTYLES[gi % 4],
                        bounds=(0, scale),
                    )
            if not np.isfinite(m.loc[m["group"] != "all", col].astype(float)).any():
                ax.text(
                    0.5,
                    0.5,
                    "AUROC undefined\n(each group holds one class)",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    fontsize=8,
                )
            _reduction_axis(ax, targets)
            if j == 0:
                ax.set_ylabel(ylabel)
            if r == 0:
                ax.set_title(method)
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=_color(l), linewidth=2, label=_label(l)) for l in labels]
    handles += [
        Line2D(
            [], [], color="black", marker=MARKERS[gi % len(MARKERS)], linestyle=LINESTYLES[gi % 4], label=f"group: {g}"
        )
        for gi, g in enumerate(groups)
    ]
    handles += [
        Line2D([], [], color=PALETTE["dense"], linewidth=0.8, label="dense model (per group, same line style)"),
        _ci_handle(),
        _degenerate_handle(),
    ]
    _legend(fig, handles, ncol=3)
    fig.suptitle(f"{experiment}: per-group performance after fine-tuning vs FLOP reduction\n({split} split)")
    return _save(fig, out_stem)


# --- 2. fairness gap, worst-group drop, spread of drops vs FLOP reduction ---

FAIRNESS_PANELS = (
    ("gap", "best − worst group accuracy (pp)"),
    ("worst_drop", "worst-group accuracy drop\nfrom dense (pp)"),
    ("drop_std", "std of group accuracy drops (pp)"),
)


def _trials_vs_target(d, experiment, split, out_stem, losses, columns, title, ablation=False):
    """Rows = methods, one column per (value, losses-subset, column title); lines = losses."""
    trials = trial_table(d, "finetuned")
    dense = trial_table(d, "dense")
    methods = sort_methods(trials.loc[trials["loss"].isin(losses), "method"])
    if not methods:
        return None
    targets = sorted(set(trials["target_reduction"] * 100))
    fig = Figure(figsize=(3.4 * len(columns) + 0.6, 2.9 * len(methods) + 1.1), layout="constrained")
    axes = _panel_grid(fig, len(methods), len(columns), sharey="col")
    for i, method in enumerate(methods):
        t = trials[trials["method"] == method]
        for j, (value, ylabel, subset, col_title) in enumerate(columns):
            ax = axes[i, j]
            if value == "gap":
                ref = dense.groupby("seed")["gap"].mean().mean()
                if np.isfinite(ref):
                    ax.axhline(ref * 100, color=PALETTE["dense"], linewidth=0.9, linestyle="--")
            else:
                ax.axhline(0, color=PALETTE["dense"], linewidth=0.9, linestyle="--")
            for li, loss in enumerate(subset):
                # a gap and a std cannot be negative; drops can (a group may gain)
                _series(
                    ax,
                    t,
                    value,
                    loss,
                    li,
                    len(subset),
                    _spacing(targets),
                    bounds=(-100, 100) if value == "worst_drop" else (0, 100),
                )
            _reduction_axis(ax, targets)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{method}" + (f"\n{col_title}" if col_title else ""), fontsize=10)
            ax.grid(alpha=0.3)
    present = [l for l in losses if (trials["loss"] == l).any()]
    handles = [Line2D([], [], color=_color(l), marker="o", label=_label(l, ablation)) for l in present]
    handles += [
        Line2D(
            [], [], color=PALETTE["dense"], linestyle="--", label="dense gap (gap panels) / no change (drop panels)"
        ),
        _ci_handle(),
        _degenerate_handle(),
    ]
    _legend(fig, handles, ncol=3)
    fig.suptitle(title)
    return _save(fig, out_stem)


def _fairness_gap(d, experiment, split, out_stem):
    labels = _present_labels(d.loc[d["stage"] == "finetuned", "loss"])
    cols = [(v, y, labels, "") for v, y in FAIRNESS_PANELS]
    paths = _trials_vs_target(
        d,
        experiment,
        split,
        out_stem,
        labels,
        cols,
        f"{experiment}: fairness after fine-tuning vs FLOP reduction ({split} split; "
        f"drops against each seed's dense model)",
    )
    return paths or _placeholder(f"{experiment}: fairness gap", NO_ROWS, out_stem)


# --- 3. accuracy vs latency and MACs ---


def _plain_log_ticks(ax):
    # 0.3 reads better than 3x10^-1; label the minor ticks only when the axis spans < 1 decade
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(fmt)
    lo, hi = ax.get_xlim()
    ax.xaxis.set_minor_formatter(fmt if hi / max(lo, 1e-12) < 10 else NullFormatter())


def _tradeoff(d, experiment, split, out_stem):
    trials = trial_table(d, "finetuned")
    trials = trials[trials["loss"].isin(list(EXPERIMENT_LOSS_LABELS))]
    labels = _present_labels(trials["loss"])
    dense = (
        trial_table(d, "dense")
        .groupby("seed")[["accuracy", "worst_group_accuracy", "latency_ms", "macs"]]
        .mean()
        .mean()
    )
    methods = sort_methods(trials["method"])
    if not methods:
        return _placeholder(f"{experiment}: trade-off", NO_ROWS, out_stem)
    fig = Figure(figsize=(9, 7), layout="constrained")
    axes = _panel_grid(fig, 2, 2, sharey="row")
    ys = (("accuracy", "overall accuracy (%)"), ("worst_group_accuracy", "worst-group accuracy (%)"))
    xs = (("latency_ms", "CPU latency (ms / sample, log scale)"), ("mmacs", "MACs per sample (millions, log scale)"))
    trials = trials.assign(mmacs=trials["macs"] / 1e6)
    dense["mmacs"] = dense["macs"] / 1e6
    for r, (yv, ylabel) in enumerate(ys):
        for c, (xv, xlabel) in enumerate(xs):
            ax = axes[r, c]
            for mi, method in enumerate(methods):
                for loss in labels:
                    t = trials[(trials["method"] == method) & (trials["loss"] == loss)]
                    if not len(t):
                        continue
                    pts = []
                    for _, g in t.groupby("target_reduction"):
                        my, hy = t_interval(g[yv])
                        pts.append((t_interval(g[xv])[0], my * 100, hy * 100))
                    px, py, ph = map(np.array, zip(*pts))
                    ax.errorbar(
                        px,
                        py,
                        yerr=_yerr(py, ph, (0, 100)),
                        color=_color(loss),
                        marker=MARKERS[mi % len(MARKERS)],
                        markersize=5,
                        capsize=2,
                        linewidth=1.1,
                        alpha=0.9,
                    )
                    bad = t[t["degenerate"]]
                    if len(bad):
                        ax.scatter(bad[xv], bad[yv] * 100, marker="x", color="black", s=30, zorder=5)
            if np.isfinite(dense[xv]) and dense[xv] > 0:
                ax.scatter([dense[xv]], [dense[yv] * 100], marker="*", s=140, color="black", zorder=6)
            ax.set_xscale("log")
            _plain_log_ticks(ax)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], color=_color(l), linewidth=2, label=_label(l)) for l in labels]
    handles += [
        Line2D([], [], color="black", marker=MARKERS[mi % len(MARKERS)], linestyle="none", label=f"method: {m}")
        for mi, m in enumerate(methods)
    ]
    handles += [
        Line2D([], [], color="black", marker="*", markersize=10, linestyle="none", label="dense model"),
        _ci_handle(),
        _degenerate_handle(),
    ]
    _legend(fig, handles, ncol=4)
    fig.suptitle(f"{experiment}: accuracy vs cost after fine-tuning, one point per target reduction ({split} split)")
    return _save(fig, out_stem)


# --- 3b. every method and every fine-tuning loss on the same axes, one column per target ---

COMPARISON_ROWS = (
    ("worst_drop", "(a) worst-group accuracy drop\nfrom dense (pp)"),
    ("acc_drop", "(b) overall accuracy drop\nfrom dense (pp)"),
    ("gap", "(c) best − worst group\naccuracy (pp)"),
)


def _categorical_step(n_labels):
    """Distance between the labels side by side at one method: they spread over at most ±0.3."""
    return min(0.25, 0.6 / max(n_labels - 1, 1))


def _dodge_categorical(mi, li, n_labels):
    """x of label li of n_labels at the method in position mi."""
    return mi + (li - (n_labels - 1) / 2) * _categorical_step(n_labels)


def _comparison(d, experiment, split, out_stem):
    trials = trial_table(d, "finetuned")
    trials = trials[trials["loss"].isin(list(EXPERIMENT_LOSS_LABELS))]
    labels = _present_labels(trials["loss"])
    methods = sort_methods(trials["method"])
    if not methods:
        return _placeholder(f"{experiment}: every method and loss", NO_ROWS, out_stem)
    targets = sorted(set(trials["target_reduction"]))
    dense_gap = trial_table(d, "dense").groupby("seed")["gap"].mean().mean()
    width = max(3.2, 0.25 * len(methods) * len(labels) + 1.0)
    # at least wide enough for the two-line title and the legend when there is one target
    fig_width = max(width * len(targets) + 0.8, 11.0)
    fig = Figure(figsize=(fig_width, 2.7 * len(COMPARISON_ROWS) + 1.4), layout="constrained")
    axes = _panel_grid(fig, len(COMPARISON_ROWS), len(targets), sharey="row")
    for j, target in enumerate(targets):
        at = trials[trials["target_reduction"] == target]
        # the best cell: the lowest mean worst-group drop over seeds at this target
        cells = {
            (mi, li): t_interval(at.loc[(at["method"] == m) & (at["loss"] == loss), "worst_drop"])[0]
            for mi, m in enumerate(methods)
            for li, loss in enumerate(labels)
        }
        finite = {c: v for c, v in cells.items() if np.isfinite(v)}
        best = min(finite, key=finite.get) if finite else None
        for r, (value, ylabel) in enumerate(COMPARISON_ROWS):
            ax = axes[r, j]
            if value == "gap":
                if np.isfinite(dense_gap):
                    ax.axhline(dense_gap * 100, color=PALETTE["dense"], linewidth=0.9, linestyle="--")
            else:
                ax.axhline(0, color=PALETTE["dense"], linewidth=0.9, linestyle="--")
            bounds = (0, 100) if value == "gap" else (-100, 100)
            for mi, method in enumerate(methods):
                for li, loss in enumerate(labels):
                    t = at[(at["method"] == method) & (at["loss"] == loss)]
                    v = t[value].astype(float) * 100
                    ok = np.isfinite(v.to_numpy())
                    if not ok.any():
                        continue
                    x = _dodge_categorical(mi, li, len(labels))
                    mean, half = t_interval(v)
                    # the seeds just right of their mean, so its marker does not hide them
                    seeds_x = x + 0.35 * _categorical_step(len(labels))
                    ax.scatter(np.full(ok.sum(), seeds_x), v[ok], s=8, color=_color(loss), alpha=0.45, linewidths=0)
                    ax.errorbar(
                        [x],
                        [mean],
                        yerr=_yerr(np.array([mean]), np.array([half]), bounds),
                        color=_color(loss),
                        marker="o",
                        markersize=5,
                        capsize=2.5,
                        linewidth=1.3,
                        linestyle="none",
                    )
                    bad = t["degenerate"].to_numpy() & ok
                    if bad.any():
                        ax.scatter(
                            np.full(bad.sum(), x),
                            v[bad],
                            marker="x",
                            color="black",
                            s=30,
                            linewidths=1.2,
                            zorder=5,
                        )
                    if (mi, li) == best:
                        ax.scatter(
                            [x],
                            [mean],
                            s=160,
                            facecolors="none",
                            edgecolors="black",
                            linewidths=1.2,
                            zorder=6,
                            gid="best",
                        )
            ax.set_xticks(range(len(methods)))
            tilt = len(methods) > 3
            ax.set_xticklabels(
                methods, rotation=30 if tilt else 0, ha="right" if tilt else "center", rotation_mode="anchor"
            )
            ax.set_xlim(-0.6, len(methods) - 0.4)
            ax.grid(alpha=0.3, axis="y")
            if j == 0:
                ax.set_ylabel(ylabel)
            if r == 0:
                ax.set_title(f"{100 * target:.4g}% of MACs removed (target)", fontsize=10)
            if r == len(COMPARISON_ROWS) - 1:
                ax.set_xlabel("pruning method")
    handles = [Line2D([], [], color=_color(l), marker="o", linestyle="none", label=_label(l)) for l in labels]
    handles += [
        Line2D([], [], color="#777777", marker="o", markersize=3, alpha=0.5, linestyle="none", label="one seed"),
        _ci_handle(),
        _degenerate_handle(),
        Line2D(
            [],
            [],
            marker="o",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor="black",
            linestyle="none",
            label="lowest mean worst-group drop at this target",
        ),
        Line2D(
            [], [], color=PALETTE["dense"], linestyle="--", label="no change (drop rows) / dense model's gap (gap row)"
        ),
    ]
    _legend(fig, handles, ncol=4)
    fig.suptitle(
        f"{experiment}: every pruning method × fine-tuning loss after fine-tuning, one column per target\n"
        f"(a) worst-group drop, (b) overall drop, (c) best − worst gap; {split} split; "
        f"drops against each seed's dense model"
    )
    return _save(fig, out_stem)


# --- 4. ablation ---


def _ablation(d, experiment, split, out_stem):
    present = [l for l in ABLATION_ONLY_LABELS if (d["loss"] == l).any()]
    if not present:
        return _placeholder(
            f"{experiment}: ablation",
            f"Ablation not run for experiment '{experiment}': metrics.csv has no rows with loss "
            f"in {', '.join(ABLATION_ONLY_LABELS)}.\nEnable the ablation in params.yaml to fill "
            f"this figure.",
            out_stem,
        )
    components = ("ce", "pw_weight", "pw_correct", "pw")
    phases = ("ce", "pw_prune_only", "pw_finetune_only", "pw")
    cols = [
        ("gap", FAIRNESS_PANELS[0][1], components, "weighting vs correction"),
        ("gap", FAIRNESS_PANELS[0][1], phases, "pruning vs fine-tuning phase"),
        ("worst_drop", FAIRNESS_PANELS[1][1], components, "weighting vs correction"),
        ("worst_drop", FAIRNESS_PANELS[1][1], phases, "pruning vs fine-tuning phase"),
    ]
    losses = tuple(dict.fromkeys(components + phases))
    # only methods that have ablation rows get a row of panels
    d = d[d["method"].isin(d.loc[d["loss"].isin(present), "method"])]
    return _trials_vs_target(
        d,
        experiment,
        split,
        out_stem,
        losses,
        cols,
        f"{experiment}: PW ablation after fine-tuning ({split} split)",
        ablation=True,
    )


# --- 5. where the loss goes: share of the fine-tuning loss per label × group cell ---


def loss_share_table(shares_df, experiment):
    """Per method, at its highest target reduction that has both CE and PW runs: the share of the
    last fine-tuning epoch's loss on each label × group cell, mean over seeds (a cell missing
    from one seed's table counts as 0 there), under CE and PW, and change = pw - ce.
    Columns: method, target_reduction, label, group, ce, pw, change (fractions)."""
    s = shares_df[(shares_df["experiment"] == experiment) & shares_df["loss"].isin(list(MAIN_LABELS))]
    cols = ["method", "target_reduction", "label", "group", "ce", "pw", "change"]
    if not len(s):
        return pd.DataFrame(columns=cols)
    s = s.assign(label=s["label"].astype(str), group=s["group"].astype(str))
    trial = ["method", "loss", "target_reduction", "seed"]
    s = s[s["epoch"] == s.groupby(trial)["epoch"].transform("max")]
    # numeric labels sort as numbers (CIFAR's 10 classes), anything else as text
    labels = sorted(s["label"].unique(), key=lambda x: (0, int(x), "") if x.lstrip("-").isdigit() else (1, 0, x))
    groups = list(dict.fromkeys(s["group"]))
    out = []
    for method in sort_methods(s["method"]):
        m = s[s["method"] == method]
        both = [t for t, g in m.groupby("target_reduction") if g["loss"].nunique() == 2]
        target = max(both) if both else m["target_reduction"].max()
        m = m[m["target_reduction"] == target]
        mean = {}
        for loss in MAIN_LABELS:
            t = m[m["loss"] == loss]
            mean[loss] = t.groupby(["label", "group"])["share"].sum() / t["seed"].nunique() if len(t) else None
        for lab in labels:
            for g in groups:
                v = {k: (math.nan if x is None else float(x.get((lab, g), 0.0))) for k, x in mean.items()}
                out.append(
                    dict(
                        method=method,
                        target_reduction=target,
                        label=lab,
                        group=g,
                        ce=v["ce"],
                        pw=v["pw"],
                        change=v["pw"] - v["ce"],
                    )
                )
    return pd.DataFrame(out, columns=cols)


def _loss_shares(shares, experiment, out_stem):
    table = loss_share_table(shares, experiment)
    if not len(table):
        return _placeholder(
            f"{experiment}: loss shares",
            f"No CE/PW rows for experiment '{experiment}' in loss_shares.csv.\nThis figure compares CE "
            f"with PW only (the paper's Figure 4); other fine-tuning labels are not drawn here.",
            out_stem,
        )
    labels = list(dict.fromkeys(table["label"]))
    groups = list(dict.fromkeys(table["group"]))
    annotate = len(labels) * len(groups) <= 36

    def matrix(t, col):
        return t.pivot(index="label", columns="group", values=col).loc[labels, groups].to_numpy(dtype=float)

    mats = [
        (method, t["target_reduction"].iloc[0], matrix(t, "ce"), matrix(t, "pw"))
        for method, t in table.groupby("method", sort=False)
    ]
    vmax = np.nanmax([np.nanmax(np.r_[a.ravel(), b.ravel(), 0]) for _, _, a, b in mats]) * 100
    dmax = max(np.nanmax(np.r_[np.abs(b - a).ravel(), 1e-6]) for _, _, a, b in mats) * 100
    fig = Figure(figsize=(3.2 * 3 + 1.2, 0.5 * len(labels) * len(mats) + 1.6 * len(mats) + 0.6), layout="constrained")
    axes = _panel_grid(fig, len(mats), 3, sharey=False)
    for i, (method, target, ce, pw) in enumerate(mats):
        cells = (
            (ce * 100, "CE", "Blues", 0, vmax, "{:.1f}%"),
            (pw * 100, "PW", "Blues", 0, vmax, "{:.1f}%"),
            ((pw - ce) * 100, "PW − CE", "RdBu_r", -dmax, dmax, "{:+.1f}"),
        )
        for j, (mat, name, cmap, lo, hi, fmt) in enumerate(cells):
            ax = axes[i, j]
            im = ax.imshow(mat, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            ax.set_xticks(range(len(groups)), groups)
            ax.set_yticks(range(len(labels)), [f"label {lab}" for lab in labels])
            ax.set_xlabel("group")
            ax.set_title(f"{method} @ {100 * target:.4g}% — {name}", fontsize=10)
            if annotate:
                for (a, b), v in np.ndenumerate(mat):
                    if np.isfinite(v):
                        dark = abs(v) > 0.6 * hi
                        ax.text(
                            b,
                            a,
                            fmt.format(v),
                            ha="center",
                            va="center",
                            fontsize=8,
                            color="white" if dark else "black",
                        )
            if i == len(mats) - 1 or len(mats) == 1:
                fig.colorbar(
                    im,
                    ax=axes[:, j],
                    location="bottom",
                    shrink=0.8,
                    label="share of batch loss (%)" if j < 2 else "change in share (pp)",
                )
    fig.suptitle(
        f"{experiment}: where the fine-tuning loss goes, CE vs PW only "
        f"(last epoch, mean over seeds, highest target per method)"
    )
    return _save(fig, out_stem)


# --- 6. fine-tuning convergence: per-group validation accuracy over the epochs (issue 29) ---

# one colour per group (Okabe-Ito without CE's blue and PW's vermillion, which stay the losses'
# colours in every other figure: here a loss is a line style)
GROUP_COLORS = ("#000000", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#999999")
LOSS_LINESTYLES = {"ce": "-", "pw": "--", "ceag": ":"}
LOSS_MARKERS = {"ce": "o", "pw": "s", "ceag": "^"}  # drawn with few epochs, where a line may be a point
NO_CURVES = (
    "No fine-tuning run of this experiment recorded validation accuracy\n"
    "(the prepared data have no 'val' split): convergence cannot be judged."
)


def _short(loss):
    """A loss label in a panel title: CE, PW, CEAG; any other label as it is."""
    return loss.upper() if loss in EXPERIMENT_LOSS_LABELS else loss


def _loss_linestyle(loss, i):
    return LOSS_LINESTYLES.get(loss, LINESTYLES[i % len(LINESTYLES)])


def _convergence(curves, experiment, out_stem):
    """Rows = targets, columns = methods; per group (colour) and loss (line style) the mean over
    seeds of the validation accuracy (%) at each fine-tuning epoch, with the seeds' min–max as a
    band; a panel whose cells are not all converged (pwprune.convergence.cell_verdicts) says which
    in its title."""
    title = f"{experiment}: per-group validation accuracy over the fine-tuning epochs"
    d = curves[curves["experiment"] == experiment] if curves is not None else None
    if d is None or not len(d):
        return _placeholder(title, NO_CURVES, out_stem)
    verdicts = cell_verdicts(d)
    d = d[(d["n"] > 0) & np.isfinite(d["val_accuracy"].astype(float))]
    if not len(d):
        return _placeholder(title, NO_CURVES, out_stem)
    methods = sort_methods(d["method"])
    targets = sorted(set(d["target_reduction"]))
    present = list(dict.fromkeys(d["loss"]))
    losses = [l for l in EXPERIMENT_LOSS_LABELS if l in present] + [
        l for l in present if l not in EXPERIMENT_LOSS_LABELS
    ]
    groups = list(dict.fromkeys(d["group"]))  # the data's group order (the histories')
    colour = {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(groups)}
    style = {l: _loss_linestyle(l, i) for i, l in enumerate(losses)}
    last_epoch = int(d["epoch"].max())
    few_epochs = last_epoch <= 12  # a marker on each epoch, so that a single point shows
    marker = {l: LOSS_MARKERS.get(l, MARKERS[i % len(MARKERS)]) for i, l in enumerate(losses)}
    fig = Figure(figsize=(max(3.4 * len(methods) + 0.8, 9.0), 2.8 * len(targets) + 1.9), layout="constrained")
    axes = _panel_grid(fig, len(targets), len(methods), sharey="row")
    any_best = False
    for i, target in enumerate(targets):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            p = d[(d["method"] == method) & (d["target_reduction"] == target)]
            for loss in losses:
                for g in groups:
                    c = p[(p["loss"] == loss) & (p["group"] == g)]
                    if not len(c):
                        continue
                    acc = c.groupby("epoch")["val_accuracy"].agg(["mean", "min", "max"]).sort_index() * 100
                    x = acc.index.to_numpy()
                    ax.fill_between(x, acc["min"], acc["max"], color=colour[g], alpha=0.15, linewidth=0)
                    ax.plot(
                        x,
                        acc["mean"],
                        color=colour[g],
                        linestyle=style[loss],
                        marker=marker[loss] if few_epochs else None,
                        markersize=3.5,
                        markerfacecolor="white" if loss != losses[0] else colour[g],
                        linewidth=1.4,
                        gid=f"curve:{loss}:{g}",
                    )
                best = p.loc[p["loss"] == loss, "best_epoch"].astype(float)
                best = best[np.isfinite(best)]
                if len(best):  # early stopping: the best epoch (median over seeds), in the loss's style
                    any_best = True
                    ax.axvline(float(np.median(best)), color=PALETTE["dense"], linewidth=0.8, linestyle=style[loss])
            v = verdicts[(verdicts["method"] == method) & (verdicts["target_reduction"] == target)]
            bad = v[v["status"] != CONVERGED]
            head = f"{method}, {100 * target:.4g}% of MACs removed"
            if len(bad):
                drawn = set(zip(p["loss"], p["group"]))
                if len(drawn) > 1 and drawn <= set(zip(bad["loss"], bad["group"])):
                    shown = "every line"
                else:
                    what = sorted({f"{_short(r.loss)} {r.group}" for r in bad.itertuples()})
                    shown = ", ".join(what[:2]) + (f" +{len(what) - 2} more" if len(what) > 2 else "")
                statuses = ", ".join(sorted(set(bad["status"])))
                ax.set_title(f"{head}\nNOT CONVERGED: {statuses}\n{shown}", fontsize=9, color="#A00000")
            else:
                ax.set_title(f"{head}\nconverged", fontsize=9)
            if few_epochs:
                ax.set_xticks(range(1, last_epoch + 1))
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlim(0.5, last_epoch + 0.5)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("validation accuracy (%)")
            if i == len(targets) - 1:
                ax.set_xlabel("fine-tuning epoch")
    handles = [Line2D([], [], color=colour[g], linewidth=2, label=f"group: {g} (colour)") for g in groups]
    handles += [
        Line2D(
            [],
            [],
            color="black",
            linestyle=style[l],
            marker=marker[l] if few_epochs else None,
            markerfacecolor="white" if l != losses[0] else "black",
            label=f"{_label(l)} (line style)",
        )
        for l in losses
    ]
    handles.append(Patch(facecolor="#777777", alpha=0.3, label="seeds' min–max (line: mean over seeds)"))
    if any_best:
        handles.append(
            Line2D([], [], color=PALETTE["dense"], linewidth=0.8, label="best epoch of early stopping (median)")
        )
    _legend(fig, handles, ncol=4)
    # on two lines: one line ran past both edges of a two-column figure
    fig.suptitle(
        f"{title}\n(validation split; a panel's title names the cells still improving at the end\n"
        f'or with too few epochs to tell: summary.md, "Fine-tuning convergence")',
        fontsize=11,
    )
    return _save(fig, out_stem)


def make_figure(name, metrics_df, shares_df, experiment, out_stem, split="test", convergence_df=None):
    """Draw figure `name` (one of FIGURES) for `experiment`; write `out_stem`.png/.pdf and return
    both paths. `split` picks the evaluation split (an extra one such as test_shortcut gets its
    own figures). `convergence` is drawn from convergence_df (results/convergence.csv,
    pwprune.convergence.read_curves; None or no rows of the experiment: a placeholder page)."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; valid names: {', '.join(FIGURES)}")
    if name == "loss_shares":
        validate_shares(shares_df, "shares_df")
        return _loss_shares(shares_df, experiment, out_stem)
    if name == "convergence":
        return _convergence(convergence_df, experiment, out_stem)
    validate_metrics(metrics_df, "metrics_df")
    d = _experiment_rows(clean_metrics(metrics_df), experiment, split)
    draw = {
        "group_performance": _group_performance,
        "fairness_gap": _fairness_gap,
        "tradeoff": _tradeoff,
        "comparison": _comparison,
        "ablation": _ablation,
    }[name]
    return draw(d, experiment, split, out_stem)


# --- variants: one experiment's methods run another way, on the same trials (issue 19) ---


def variant_comparison(metrics_df, variant, base, out_stem, split="test"):
    """Rows = the variant's methods; columns = fairness gap and worst-group drop; each label the
    variant ran (CE, PW, CEAG) in its colour, the base solid with circles, the variant dashed with
    squares (mean ± 95% CI over seeds). Writes out_stem.png/.pdf; returns both paths."""
    validate_metrics(metrics_df, "metrics_df")
    d = clean_metrics(metrics_df)
    d = d[d["split"] == split]
    trials = trial_table(d, "finetuned")
    v = trials[trials["experiment"] == variant]
    b = trials[trials["experiment"] == base]
    methods = sort_methods(v["method"])
    if not methods or not len(b):
        missing = variant if not methods else base
        return _placeholder(f"{variant} vs {base}", f"No fine-tuned trials of {missing} in the table.", out_stem)
    targets = sorted(set(trials.loc[trials["experiment"].isin([variant, base]), "target_reduction"] * 100))
    columns = FAIRNESS_PANELS[:2]
    fig = Figure(figsize=(3.6 * len(columns) + 0.6, 2.9 * len(methods) + 1.2), layout="constrained")
    axes = _panel_grid(fig, len(methods), len(columns), sharey="col")
    styles = ((base, b, "o", "-"), (variant, v, "s", "--"))
    labels = _present_labels(v["loss"])
    for i, method in enumerate(methods):
        for j, (value, ylabel) in enumerate(columns):
            ax = axes[i, j]
            ax.axhline(0, color=PALETTE["dense"], linewidth=0.6, linestyle=":")
            k = 0
            for _, t, marker, ls in styles:
                for loss in labels:
                    _series(
                        ax,
                        t[t["method"] == method],
                        value,
                        loss,
                        k,
                        2 * len(labels),
                        _spacing(targets),
                        marker=marker,
                        linestyle=ls,
                        bounds=(-100, 100) if value == "worst_drop" else (0, 100),
                    )
                    k += 1
            _reduction_axis(ax, targets)
            ax.set_ylabel(ylabel)
            ax.set_title(method, fontsize=10)
            ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=_color(loss), marker=marker, linestyle=ls, label=f"{_label(loss)}, {name}")
        for name, _, marker, ls in styles
        for loss in labels
    ]
    handles += [_ci_handle(), _degenerate_handle()]
    _legend(fig, handles, ncol=3)
    fig.suptitle(f"{variant} vs {base}: fairness after fine-tuning ({split} split)")
    return _save(fig, out_stem)
