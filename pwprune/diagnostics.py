"""Teacher diagnostic: can the PW loss act at all on this experiment?

The PW loss is computed against the dense model's ("teacher's") outputs on the *training*
split. Where the teacher is near-certain of every training sample (a model that memorised its
training set), every weight is ~min_weight and every corrected target ~one-hot, so PW is CE
times a constant - and AdamW ignores a constant loss scale. This module measures that before
GPU days go into pruning and fine-tuning:

- `diagnose` -> one row for the whole split, one per group and one per label x group cell:
  n, teacher training accuracy, the PW weights' distribution, the share of samples whose target
  correction keeps the teacher's soft output, and how soft those targets are.
- `uniform_weight_warning` -> a text saying why PW will act like CE and what to try, or None.
- `teacher_diagnostic_stage` is what the workflow's `teacher_diagnostic` rule runs;
  `summary_section` / `append_summary` and `teacher_figure` show the result.

The criterion (`uniform_weight_warning`) fires when BOTH parts of PW are inert:
  1. weighting: max / min of the per-cell mean weights < WEIGHT_RATIO_LIMIT (1.1). A constant
     factor does nothing under AdamW, so what PW can change is the *relative* weight of one
     cell against another; this ratio is the largest factor by which PW moves any cell's share
     of the loss against any other's. It is scale-free, unlike the spread of cell means relative
     to (1 - m): that one reads "uses half the range" at m = 0.95 although the weights then
     differ by at most 5%.
  2. correction: in every cell, the mean target mass off the true label (1 - s where the soft
     output is kept, 0 where the hard label is) < SOFTNESS_LIMIT (0.05): the corrected targets
     are one-hot to within 5%, half the usual label smoothing of 0.1. With weighting inert but
     soft targets (a high min_weight on an uncertain teacher) PW still acts as
     self-distillation, so that case does not warn. (A 2% limit let the memorising teacher of
     `digits_memorised` pass: weight ratio 1.04, but one 6-image minority cell at 4.2%.)
Cells, not samples, because the fairness question is about groups: PW can only protect an
under-represented cell if it weights that cell differently from the others.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

WEIGHT_RATIO_LIMIT = 1.1
SOFTNESS_LIMIT = 0.05
QUANTILES = (10, 50, 90)
COLUMNS = [
    "min_weight",
    "gamma",
    "level",
    "label",
    "group",
    "n",
    "teacher_accuracy",
    "s_mean",
    "weight_mean",
    "weight_min",
    *[f"weight_p{q}" for q in QUANTILES],
    "weight_max",
    "soft_share",
    "target_softness",
]
# columns the workflow's CSV adds in front (see teacher_diagnostic_stage)
FILE_COLUMNS = ["experiment", "seed", "methods", *COLUMNS]
TEXT_COLUMNS = ["experiment", "methods", "level", "label", "group"]
NUMBER_COLUMNS = [c for c in FILE_COLUMNS if c not in TEXT_COLUMNS]


def teacher_view(teacher_logits, labels):
    """Per sample: s = teacher's probability of the true label, and whether the teacher's
    prediction is right (= where target correction keeps its soft output). Same conventions as
    pwprune.loss: softmax for (N, C), sigmoid for a single logit (s = p*y + (1-p)*(1-y),
    predicted 1 iff p > 0.5). Returns numpy float64 s, bool correct."""
    import torch

    from pwprune.loss import probabilities

    logits = torch.as_tensor(teacher_logits).float()
    y = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
    probs = probabilities(logits).double()
    if probs.shape[0] != y.shape[0]:
        raise ValueError(
            f"teacher_logits has {probs.shape[0]} rows but labels has {y.shape[0]}: "
            "the teacher outputs must be the training split's, in index order"
        )
    if len(y) and (y.min() < 0 or y.max() >= probs.shape[1]):
        raise ValueError(f"labels must be in [0, {probs.shape[1]}) for teacher logits of shape {tuple(logits.shape)}")
    s = probs.gather(1, y[:, None]).squeeze(1)
    correct = probs.argmax(dim=1) == y
    return s.numpy(), correct.numpy()


def pw_weights(s, min_weight, gamma):
    """The PW sample weights for true-label probabilities s, through pwprune.loss's own formula."""
    import torch

    from pwprune.loss import PerformanceWeightedLoss

    loss = PerformanceWeightedLoss(min_weight=min_weight, gamma=gamma)  # validates m and gamma
    return loss.sample_weights(torch.as_tensor(np.asarray(s, dtype=np.float64))).numpy()


def _row(level, label, group, s, correct, w):
    n = len(s)
    row = dict(level=level, label=label, group=group, n=n)
    if not n:
        return row
    row.update(
        teacher_accuracy=float(correct.mean()),
        s_mean=float(s.mean()),
        weight_mean=float(w.mean()),
        weight_min=float(w.min()),
        weight_max=float(w.max()),
        soft_share=float(correct.mean()),
        target_softness=float(np.where(correct, 1.0 - s, 0.0).mean()),
    )
    for q, v in zip(QUANTILES, np.percentile(w, QUANTILES)):
        row[f"weight_p{q}"] = float(v)
    return row


def diagnose(teacher_logits, labels, groups, min_weight, gamma, class_names=None, group_names=None):
    """The diagnostic table for one PW setting (columns COLUMNS, fractions).

    Rows: level "all" (label and group "all"), then level "group" per group (label "all"),
    then level "cell" per label x group that holds samples. Labels and groups are named by
    class_names / group_names (position = id), else by their ids. soft_share is the share of
    samples on which target correction keeps the soft output (= teacher accuracy, here per
    row); target_softness is the mean target mass off the true label (1 - s on those samples,
    0 on the others)."""
    s, correct = teacher_view(teacher_logits, labels)
    y = np.asarray(labels).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if len(g) != len(y):
        raise ValueError(f"groups has {len(g)} entries but labels has {len(y)}")
    w = pw_weights(s, min_weight, gamma)
    label_name = (lambda i: str(class_names[i])) if class_names is not None else str
    group_ids = range(len(group_names)) if group_names is not None else sorted(set(g.tolist()))
    group_name = (lambda i: str(group_names[i])) if group_names is not None else str
    rows = [_row("all", "all", "all", s, correct, w)]
    for gi in group_ids:
        k = g == gi
        rows.append(_row("group", "all", group_name(gi), s[k], correct[k], w[k]))
    for yi in sorted(set(y.tolist())):
        for gi in group_ids:
            k = (y == yi) & (g == gi)
            if k.any():
                rows.append(_row("cell", label_name(yi), group_name(gi), s[k], correct[k], w[k]))
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df["min_weight"], df["gamma"] = float(min_weight), float(gamma)
    return df


def _settings(table):
    return list(dict.fromkeys(zip(table["min_weight"].astype(float), table["gamma"].astype(float))))


def uniform_weight_warning(table, min_weight=None, gamma=None):
    """None if PW can act on this teacher, else a text saying why it will act like CE (the
    per-cell mean weights and teacher training accuracy) and what to try. `table` is
    `diagnose`'s (one seed); min_weight/gamma pick the setting when it holds several. The
    criterion (both weighting and correction inert) is in the module docstring."""
    settings = _settings(table)
    if min_weight is None and gamma is None:
        if len(settings) != 1:
            raise ValueError(
                f"the table holds {len(settings)} PW settings {settings}; pass min_weight and gamma to pick one"
            )
        min_weight, gamma = settings[0]
    t = table[(table["min_weight"].astype(float) == float(min_weight)) & (table["gamma"].astype(float) == float(gamma))]
    cells = t[(t["level"] == "cell") & (t["n"] > 0)]
    if not len(cells):
        raise ValueError(f"no cell rows for min_weight={min_weight}, gamma={gamma}; settings in the table: {settings}")
    hi, lo = cells["weight_mean"].max(), cells["weight_mean"].min()
    ratio = hi / lo if lo > 0 else (1.0 if hi == 0 else math.inf)  # all zero: uniform (and dead)
    softness = cells["target_softness"].max()
    if not (ratio < WEIGHT_RATIO_LIMIT and softness < SOFTNESS_LIMIT):
        return None
    per_cell = "; ".join(
        f"label {r.label} / {r.group} (n={int(r.n)}): mean weight {r.weight_mean:.3f}, teacher "
        f"train accuracy {100 * r.teacher_accuracy:.1f}%"
        for r in cells.itertuples(index=False)
    )
    every = t[t["level"] == "all"].iloc[0]
    return (
        f"PW (min_weight={min_weight:g}, gamma={gamma:g}) will act like CE on this teacher. "
        f"The dense model is near-certain on its own training split (accuracy "
        f"{100 * every.teacher_accuracy:.1f}%, mean probability of the true label "
        f"{every.s_mean:.4f}), so the per-cell mean weights differ by a factor of only "
        f"{ratio:.3f} (< {WEIGHT_RATIO_LIMIT}; AdamW ignores a constant scale) and the corrected "
        f"targets are one-hot to within {100 * softness:.2f}% (< {100 * SOFTNESS_LIMIT:g}%). "
        f"Per cell: {per_cell}. "
        f"What to try: (1) keep the teacher from memorising its training split: more distinct "
        f"training images, fewer dense epochs or more weight decay; (2) train the dense model "
        f"and fine-tune with augmentation (train.augment / finetune.augment), so the teacher is "
        f"queried on new views on the fly; (3) a lower min_weight widens the weights' range, and "
        f"a gamma below 1 (not above: (1-s)**gamma shrinks faster for higher gamma) lifts small "
        f"teacher errors into the weights; (4) check that the under-represented cell is actually "
        f"hard: compare the dense model's per-group test accuracy (metrics.csv) - if the teacher "
        f"is as sure of it as of the rest, there is nothing for PW to up-weight."
    )


# ---------------------------------------------------------------- the workflow's stage


def read_train_labels(data_dir):
    """(labels, groups, meta) of a prepared dataset's training split, without reading its images
    (the loader memory-maps them: only the pages a job touches are read)."""
    from pwprune.data import load_prepared

    prepared = load_prepared(data_dir)
    train = prepared.splits["train"]
    return train.y, train.g, prepared.meta


def teacher_diagnostic_stage(data_dir, teacher_path, settings, experiment, seed, out_csv, log=print):
    """Write the diagnostic CSV (FILE_COLUMNS) for every PW setting (dicts with min_weight,
    gamma, methods) and log the table and, per setting that fires, the warning as "WARNING: ..."."""
    from pwprune.stages.inputs import load_tensor
    from pwprune.stages.jobs import write_csv

    labels, groups, meta = read_train_labels(data_dir)
    logits = load_tensor(teacher_path)
    tables = []
    for st in settings:
        t = diagnose(
            logits, labels, groups, st["min_weight"], st["gamma"], meta.get("class_names"), meta.get("group_names")
        )
        t.insert(0, "methods", ";".join(st.get("methods", [])))
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "seed", int(seed))
    table.insert(0, "experiment", experiment)
    write_csv(out_csv, table)
    with pd.option_context(
        "display.width",
        200,
        "display.max_columns",
        None,
        "display.max_rows",
        None,
        "display.float_format",
        "{:.4f}".format,
    ):
        log(
            f"teacher diagnostic, experiment {experiment}, seed {seed} (training split, "
            f"{len(labels)} samples):\n{table.drop(columns=['experiment', 'seed']).to_string()}"
        )
    fired = 0
    for m, g in _settings(table):
        text = uniform_weight_warning(table, m, g)
        if text:
            fired += 1
            log(f"WARNING: experiment {experiment}, seed {seed}: {text}")
    if not fired:
        log(
            "PW can act on this teacher: the per-cell weights or the corrected targets differ "
            "from CE's for every setting."
        )
    return table


def read_diagnostics(paths):
    """The diagnostic CSVs of several seeds/experiments in one frame; refuses foreign files."""
    frames = []
    for p in paths:
        # names stay text ("None", "NA" are valid class names); only numbers can be missing
        df = pd.read_csv(
            p,
            dtype={c: str for c in TEXT_COLUMNS},
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN"] for c in NUMBER_COLUMNS},
        )
        missing = [c for c in FILE_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(
                f"{p}: teacher diagnostic lacks column(s) {', '.join(missing)}; "
                "delete it and rerun the teacher_diagnostic job"
            )
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=FILE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _warnings(d):
    """[(seed, min_weight, gamma, text)] for every seed and setting of one experiment that fires."""
    out = []
    for seed, t in d.groupby("seed", sort=True):
        for m, g in _settings(t):
            text = uniform_weight_warning(t, m, g)
            if text:
                out.append((int(seed), m, g, text))
    return out


def cell_means(d):
    """Cell rows of one experiment's diagnostics, averaged over seeds, per setting: the columns
    of the summary table plus the seeds' min and max of the mean weight and accuracy."""
    c = d[d["level"] == "cell"]
    keys = ["min_weight", "gamma", "methods", "label", "group"]
    agg = c.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"),
        n=("n", "mean"),
        teacher_accuracy=("teacher_accuracy", "mean"),
        accuracy_lo=("teacher_accuracy", "min"),
        accuracy_hi=("teacher_accuracy", "max"),
        weight_mean=("weight_mean", "mean"),
        weight_lo=("weight_mean", "min"),
        weight_hi=("weight_mean", "max"),
        soft_share=("soft_share", "mean"),
    )
    return agg.reset_index()


def summary_section(d, experiment):
    """Markdown: per setting and cell, teacher training accuracy, mean PW weight and soft-target
    share averaged over seeds; then the warning of every seed and setting where it fires."""
    d = d[d["experiment"] == experiment]
    lines = [f"## Teacher diagnostic: {experiment}", ""]
    if not len(d):
        return "\n".join(lines + ["(no teacher diagnostic for this experiment)", ""])
    lines += [
        "The dense model's outputs on its *training* split, which the PW loss uses, per "
        "label × group cell; mean over seeds "
        f"({d['seed'].nunique()}). Mean weight: PW's sample weight "
        "m + (1 − m)(1 − s)^γ; soft-target share: samples where target correction keeps "
        "the teacher's soft output (the teacher is right).",
        "",
    ]
    header = [
        "min_weight / gamma",
        "methods",
        "label",
        "group",
        "n",
        "teacher train acc. (%)",
        "mean weight",
        "soft-target share (%)",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in cell_means(d).itertuples(index=False):
        cells = [
            f"{r.min_weight:g} / {r.gamma:g}",
            (r.methods or "").replace(";", ", "),
            r.label,
            r.group,
            f"{r.n:.0f}",
            f"{100 * r.teacher_accuracy:.1f}",
            f"{r.weight_mean:.3f}",
            f"{100 * r.soft_share:.1f}",
        ]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    lines.append("")
    for seed, m, g, text in _warnings(d):
        lines += [f"**WARNING** (seed {seed}, min_weight {m:g}, gamma {g:g}): {text}", ""]
    return "\n".join(lines)


def append_summary(md_path, diagnostic_paths, experiments):
    """Append one summary_section per experiment to the summary markdown."""
    d = read_diagnostics(diagnostic_paths)
    with open(md_path, "a") as f:
        for exp in experiments:
            f.write("\n" + summary_section(d, exp))


# ---------------------------------------------------------------- the figure


def teacher_figure(d, experiment, out_stem):
    """draw_teacher_figure written to out_stem.png (200 dpi, as pwprune.plots) and .pdf; returns
    both paths. Saved here rather than through pwprune.plots so that the summary, which imports
    this module, does not depend on the main figures' code (pwprune.provenance)."""
    import os

    fig = draw_teacher_figure(d, experiment)
    os.makedirs(os.path.dirname(os.path.abspath(out_stem)), exist_ok=True)
    paths = [f"{out_stem}.png", f"{out_stem}.pdf"]
    fig.savefig(paths[0], dpi=200)
    fig.savefig(paths[1])
    return paths


def draw_teacher_figure(d, experiment):
    """Per label x group cell: mean PW weight per setting (top axes: bars = mean over seeds,
    error bars = the seeds' min..max; dashed line = each setting's min_weight) and the teacher's
    training accuracy in % (bottom axes, same bars and error bars). `d` is read_diagnostics'
    frame. The title says when the warning fires for any seed. Returns the Figure."""
    from matplotlib.figure import Figure

    d = d[d["experiment"] == experiment]
    if not len(d):
        raise ValueError(f"no teacher diagnostic rows for experiment {experiment!r}")
    cm = cell_means(d)
    cells = list(dict.fromkeys(zip(cm["label"], cm["group"])))
    settings = list(dict.fromkeys(zip(cm["min_weight"], cm["gamma"], cm["methods"])))
    x = np.arange(len(cells))
    fig = Figure(figsize=(max(6.0, 0.9 * len(cells) + 2.5), 6.5), layout="constrained")
    ax_w, ax_a = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(settings)
    colors = ("#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#0072B2")
    for i, (m, g, methods) in enumerate(settings):
        t = cm[(cm["min_weight"] == m) & (cm["gamma"] == g) & (cm["methods"] == methods)]
        t = t.set_index(["label", "group"]).loc[cells]
        mean = t["weight_mean"].to_numpy()
        # min <= mean <= max over seeds; the mean of equal floats can land an ulp outside them,
        # and matplotlib refuses a negative error bar
        err = np.clip(np.vstack([mean - t["weight_lo"].to_numpy(), t["weight_hi"].to_numpy() - mean]), 0, None)
        xs = x + (i - (len(settings) - 1) / 2) * width
        color = colors[i % len(colors)]
        who = f" ({methods.replace(';', ', ')})" if methods else ""
        ax_w.bar(xs, mean, width, yerr=err, capsize=3, color=color, label=f"min_weight {m:g}, gamma {g:g}{who}")
        ax_w.hlines(m, xs[0] - width / 2, xs[-1] + width / 2, colors=color, linestyles="--", linewidth=0.8)
    ax_w.set_ylim(0, 1.05)
    ax_w.set_ylabel("mean PW weight\n(dashed: min_weight)")
    ax_w.legend(fontsize=8, loc="lower right")
    acc = cm.drop_duplicates(["label", "group"]).set_index(["label", "group"]).loc[cells]
    mean = 100 * acc["teacher_accuracy"].to_numpy()
    err = np.clip(
        np.vstack([mean - 100 * acc["accuracy_lo"].to_numpy(), 100 * acc["accuracy_hi"].to_numpy() - mean]), 0, None
    )
    ax_a.bar(x, mean, 0.6, yerr=err, capsize=3, color="#555555")
    ax_a.set_ylim(0, 105)
    ax_a.set_ylabel("teacher accuracy on\ntraining split (%)")
    ax_a.set_xticks(
        x,
        [f"label {lab}\n{grp}\nn={n:.0f}" for (lab, grp), n in zip(cells, acc["n"])],
        rotation=45 if len(cells) > 8 else 0,
        fontsize=8,
    )
    ax_a.set_xlabel("label × group cell (n = training samples)")
    for ax in (ax_w, ax_a):
        ax.grid(alpha=0.3, axis="y")
    fired = _warnings(d)
    note = (
        "\nWARNING: weights nearly uniform and targets ~one-hot: PW acts like CE "
        f"(seeds {sorted({w[0] for w in fired})}; see the job log / summary.md)"
        if fired
        else ""
    )
    fig.suptitle(
        f"{experiment}: what the PW loss sees (dense model on its training split; "
        f"error bars: range over {d['seed'].nunique()} seed(s)){note}",
        fontsize=10,
    )
    return fig
