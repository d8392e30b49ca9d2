"""Had fine-tuning converged? Each group's validation accuracy over the fine-tuning epochs, and a
verdict per group: still improving at the end, converged, or too few epochs to tell.

A group's drop after pruning is what pruning removed only once fine-tuning has recovered what it
can: a group that is still improving at the last epoch would lose less with more fine-tuning, and
its measured drop is partly an under-fine-tuning artefact (issue 29).

The criterion (docs/convergence.md says why): with E epochs and q = ceil(E / 4), the gain of the last
quarter is the mean validation accuracy of the last q epochs minus that of the q epochs before.
A group is still improving when the gain exceeds its tolerance, max(MIN_GAIN, 2 x the standard
error of that difference under binomial noise alone, sqrt(p (1 - p) / n) x sqrt(2 / q), with p the
last quarter's accuracy and n the group's validation samples). With fewer than MIN_EPOCHS epochs
there is no curve to judge: "too few epochs", which warns as well.

Over several runs (results/convergence.csv, written by the aggregation with curve_rows), a cell
(experiment, method, loss, target, group) is judged on its seeds together (cell_verdicts): the
mean of the seeds' gains against a tolerance that also counts their spread. The summary's section
and warning, and the `convergence` figure's panel titles, come from those verdicts.

Imports only the standard library at module level (pandas inside the functions over tables): the
fine-tuning job (its log), the aggregation, the summary and the figures use it.
"""

from __future__ import annotations

import math

MIN_EPOCHS = 4
MIN_GAIN = 0.005  # half a percentage point: below it, a gain does not change a reported drop

CONVERGED, IMPROVING, TOO_FEW = "converged", "still improving", "too few epochs"


def quarter_gain(accuracies):
    """(gain, q) of a sequence of per-epoch accuracies: mean of the last q minus mean of the q
    before, q = ceil(E / 4); (nan, 0) with fewer than MIN_EPOCHS values."""
    a = [float(v) for v in accuracies]
    if len(a) < MIN_EPOCHS:
        return math.nan, 0
    q = math.ceil(len(a) / 4)
    late, before = a[-q:], a[-2 * q : -q]
    return sum(late) / q - sum(before) / q, q


def binomial_se(p, n, q):
    """The standard error of a difference of two q-epoch means of a group accuracy p measured on n
    samples under binomial noise alone (epochs taken as independent draws):
    sqrt(p (1 - p) / n) x sqrt(2 / q); nan without samples, epochs or a finite p."""
    if not n or q < 1 or not math.isfinite(p):
        return math.nan
    return math.sqrt(max(p * (1 - p), 0.0) / n) * math.sqrt(2 / q)


def tolerance(p, n, q):
    """The gain that binomial noise alone exceeds with ~2.5 % probability: twice the standard error
    of a difference of two q-epoch means of a group accuracy p measured on n samples (epochs taken
    as independent draws), and at least MIN_GAIN."""
    se = binomial_se(p, n, q)
    if not math.isfinite(se):
        return math.nan
    return max(MIN_GAIN, 2 * se)


def group_verdicts(history):
    """One fine-tuning's history (pwprune.train.fit, entries with "val") -> per validated group
    {group, n, epochs, first, last, gain, q, tolerance, status}; [] when no epoch was validated."""
    epochs = [h for h in history if h.get("val")]
    if not epochs:
        return []
    names = [g["group"] for g in epochs[-1]["val"]["groups"]]
    out = []
    for name in names:
        acc = [next(g["accuracy"] for g in h["val"]["groups"] if g["group"] == name) for h in epochs]
        n = next(g["n"] for g in epochs[-1]["val"]["groups"] if g["group"] == name)
        gain, q = quarter_gain(acc)
        tol = tolerance(sum(acc[-q:]) / q, n, q) if q else math.nan
        if not q:
            status = TOO_FEW
        elif gain > tol:
            status = IMPROVING
        else:
            status = CONVERGED
        out.append(
            {
                "group": name,
                "n": n,
                "epochs": len(acc),
                "first": acc[0],
                "last": acc[-1],
                "gain": gain,
                "q": q,
                "tolerance": tol,
                "status": status,
            }
        )
    return out


def warnings(verdicts, context=""):
    """The log lines for the groups whose fine-tuning is not shown to have converged."""
    prefix = f"{context}: " if context else ""
    lines = []
    for v in verdicts:
        if v["status"] == IMPROVING:
            lines.append(
                f"WARNING: {prefix}group {v['group']} was still improving at the end of fine-tuning "
                f"(validation accuracy +{100 * v['gain']:.1f} pp over the last {v['q']} of {v['epochs']} "
                f"epochs, above the noise tolerance {100 * v['tolerance']:.1f} pp): its measured drop may be "
                "an under-fine-tuning artefact; fine-tune longer (finetune.epochs) or with early stopping "
                "(finetune.early_stopping) and a larger maximum"
            )
        elif v["status"] == TOO_FEW:
            lines.append(
                f"WARNING: {prefix}group {v['group']}: {v['epochs']} fine-tuning epoch(s) validated, fewer than "
                f"{MIN_EPOCHS}: convergence cannot be judged, and its measured drop may be an under-fine-tuning "
                "artefact; fine-tune for more epochs (finetune.epochs)"
            )
    return lines


# ---------------------------------------------------------------- over the runs: table, cells, summary

IDENT_COLUMNS = ("experiment", "method", "loss", "target_reduction", "seed")
# results/convergence.csv (rule aggregate): one row per fine-tuning run x validated epoch x group
CURVE_COLUMNS = (*IDENT_COLUMNS, "epoch", "group", "n", "val_accuracy", "val_loss", "best_epoch")
# a cell of the diagnostic: its seeds are the runs it judges together
CELL_KEYS = ["experiment", "method", "loss", "target_reduction", "group"]
VERDICT_COLUMNS = (
    *CELL_KEYS,
    "seeds",
    "epochs",
    "min_epochs",
    "last_accuracy",
    "gain_mean",
    "gain_sd",
    "se",
    "tolerance",
    "status",
)
CRITERION = (
    "Per run, the gain of the last quarter is the mean validation accuracy of the last q = ⌈E/4⌉ "
    "of its E epochs minus that of the q epochs before. A cell (method × loss × target × group) is "
    f"*{IMPROVING}* when the mean of its seeds' gains exceeds max({100 * MIN_GAIN:g} pp, 2 SE), SE "
    "being the larger of binomial noise alone (the standard error of one run's gain on the group's "
    "validation samples, sqrt(p (1 − p) / n) × sqrt(2 / q)) and the spread of the gains over seeds, "
    f"each divided by √seeds; *{TOO_FEW}* when a run validated fewer than {MIN_EPOCHS} epochs; else "
    f"*{CONVERGED}*."
)
WHAT_TO_TRY = (
    "fine-tune longer (`finetune.epochs`), or with early stopping (`finetune.early_stopping`) and a larger maximum"
)


def early_stopping_record(history):
    """The "early_stopping" entry of a fit history ({best_epoch, stopped_epoch, monitor,
    restored}; on its last entry), or None when early stopping was off."""
    return next((h["early_stopping"] for h in reversed(history) if h.get("early_stopping")), None)


def curve_rows(history, ident):
    """One fine-tuning's history -> rows (CURVE_COLUMNS) per validated epoch x group; `ident`
    gives the run's experiment, method, loss (label), target_reduction and seed. best_epoch is
    early stopping's best epoch on every row, nan without early stopping. [] when no epoch has
    "val" (the prepared data have no val split)."""
    missing = [k for k in IDENT_COLUMNS if k not in ident]
    if missing:
        raise ValueError(f"ident lacks {missing}; it needs {list(IDENT_COLUMNS)}")
    stop = early_stopping_record(history)
    best = int(stop["best_epoch"]) if stop and stop.get("best_epoch") is not None else math.nan
    head = {k: ident[k] for k in IDENT_COLUMNS}
    rows = []
    for i, h in enumerate(history):
        val = h.get("val")
        if not val:
            continue
        for g in val["groups"]:
            rows.append(
                {
                    **head,
                    "epoch": int(h.get("epoch", i + 1)),
                    "group": str(g["group"]),
                    "n": int(g["n"]),
                    "val_accuracy": float(g["accuracy"]),
                    "val_loss": float(g["loss"]),
                    "best_epoch": best,
                }
            )
    return rows


def read_curves(path):
    """results/convergence.csv as a DataFrame, its columns checked (group names kept as text)."""
    import pandas as pd

    df = pd.read_csv(path, dtype={"group": str})
    missing = [c for c in CURVE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (written by rule aggregate, pwprune.convergence)")
    return df


def cell_verdicts(curves):
    """Per cell (CELL_KEYS) over its seeds (VERDICT_COLUMNS): seeds, epochs (median validated
    epochs over seeds), min_epochs, last_accuracy (mean over seeds at each run's last epoch),
    gain_mean / gain_sd (the last quarter's gain, quarter_gain, mean and sd over seeds; sd nan with
    one seed), se, tolerance = max(MIN_GAIN, 2 se) and status. se is the larger of the binomial
    standard error of one run's gain (binomial_se at the run's last-quarter accuracy and the
    group's n; root mean square over seeds) and the gains' sd, each divided by sqrt(seeds).
    Status: TOO_FEW when any run validated fewer than MIN_EPOCHS epochs, IMPROVING when gain_mean
    exceeds the tolerance, else CONVERGED. Rows of a group without validation samples are left out."""
    import numpy as np
    import pandas as pd

    ok = (curves["n"] > 0) & np.isfinite(curves["val_accuracy"].astype(float))
    curves = curves[ok]
    out = []
    for key, cell in curves.groupby(CELL_KEYS, sort=True):
        epochs, gains, ses, last = [], [], [], []
        for _, run in cell.groupby("seed", sort=True):
            run = run.sort_values("epoch")
            acc = run["val_accuracy"].astype(float).tolist()
            epochs.append(len(acc))
            last.append(acc[-1])
            gain, q = quarter_gain(acc)
            if q:
                gains.append(gain)
                ses.append(binomial_se(sum(acc[-q:]) / q, int(run["n"].iloc[-1]), q))
        k = len(gains)
        gain_mean = float(np.mean(gains)) if k else math.nan
        gain_sd = float(np.std(gains, ddof=1)) if k > 1 else math.nan
        if k:
            spread = gain_sd / math.sqrt(k) if k > 1 else 0.0
            se = max(math.sqrt(float(np.mean(np.square(ses)))) / math.sqrt(k), spread)
            tol = max(MIN_GAIN, 2 * se)
        else:
            se = tol = math.nan
        if min(epochs) < MIN_EPOCHS:
            status = TOO_FEW
        elif gain_mean > tol:
            status = IMPROVING
        else:
            status = CONVERGED
        out.append(
            {
                **dict(zip(CELL_KEYS, key)),
                "seeds": len(epochs),
                "epochs": float(np.median(epochs)),
                "min_epochs": min(epochs),
                "last_accuracy": float(np.mean(last)),
                "gain_mean": gain_mean,
                "gain_sd": gain_sd,
                "se": se,
                "tolerance": tol,
                "status": status,
            }
        )
    return pd.DataFrame(out, columns=list(VERDICT_COLUMNS))


def finetuning_converged(verdicts):
    """True when every cell converged, False when one did not, None when none could be judged
    (no validation data): the headline's "finetuning_converged"."""
    if not len(verdicts):
        return None
    return bool((verdicts["status"] == CONVERGED).all())


def _cell_name(r, with_experiment):
    name = f"{r.method}/{r.loss}/{100 * float(r.target_reduction):.4g} % group {r.group}"
    return f"{r.experiment}: {name}" if with_experiment else name


def _gain_text(mean, sd):
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:+.1f}" + (f" ± {100 * sd:.1f}" if math.isfinite(sd) else "")


def summary_warnings(verdicts, limit=6):
    """The summary's warning (a list of one markdown paragraph, or []) when any cell of
    cell_verdicts is not CONVERGED: which cells (at most `limit` named per status), what it
    means, what to try."""
    bad = verdicts[verdicts["status"] != CONVERGED]
    if not len(bad):
        return []
    several = verdicts["experiment"].nunique() > 1

    def listed(rows, describe):
        names = [describe(r) for r in rows.head(limit).itertuples(index=False)]
        return "; ".join(names) + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")

    parts = []
    improving = bad[bad["status"] == IMPROVING]
    if len(improving):
        parts.append(
            f"{len(improving)} still improving at the end: "
            + listed(
                improving,
                lambda r: f"{_cell_name(r, several)} ({_gain_text(r.gain_mean, math.nan)} pp over the last quarter)",
            )
        )
    few = bad[bad["status"] == TOO_FEW]
    if len(few):
        parts.append(
            f"{len(few)} with too few epochs to tell (fewer than {MIN_EPOCHS} validated, as few as "
            f"{int(few['min_epochs'].min())}): " + listed(few, lambda r: _cell_name(r, several))
        )
    return [
        f"**WARNING** (fine-tuning convergence): in {len(bad)} of {len(verdicts)} cells fine-tuning was not "
        f"shown to have converged, {'; '.join(parts)}. Those groups' measured drops may be an "
        f"under-fine-tuning artefact (more fine-tuning could recover part of them), not what pruning "
        f'removed: {WHAT_TO_TRY}. Every cell is in the section "Fine-tuning convergence" below.'
    ]


def summary_section(verdicts):
    """The "## Fine-tuning convergence" section of results/summary.md: the criterion, then one
    row per cell of cell_verdicts; says so when no run recorded validation accuracy."""
    lines = [
        "## Fine-tuning convergence",
        "",
        "Did each group's validation accuracy stop rising before fine-tuning ended? A group still "
        "improving at the last epoch would lose less with more fine-tuning, so its measured drop is "
        "partly an under-fine-tuning artefact (results/convergence.csv has every run's curve; "
        "figure `convergence`). " + CRITERION,
        "",
    ]
    if not len(verdicts):
        lines.append(
            "No fine-tuning run recorded validation accuracy (the prepared data have no `val` split, "
            "or the runs predate the diagnostic): convergence cannot be judged."
        )
        return lines
    header = [
        "experiment",
        "method",
        "loss",
        "FLOP reduction (%)",
        "group",
        "seeds",
        "epochs",
        "val. accuracy (%)",
        "gain of the last quarter (pp), mean ± sd",
        "tolerance (pp)",
        "status",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in verdicts.itertuples(index=False):
        status = r.status if r.status == CONVERGED else f"**{r.status}**"
        cells = [
            r.experiment,
            r.method,
            r.loss,
            f"{100 * float(r.target_reduction):.4g}",
            r.group,
            r.seeds,
            f"{r.epochs:g}",
            f"{100 * r.last_accuracy:.1f}",
            _gain_text(r.gain_mean, r.gain_sd),
            "–" if not math.isfinite(r.tolerance) else f"{100 * r.tolerance:.1f}",
            status,
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    n_bad = int((verdicts["status"] != CONVERGED).sum())
    lines += [
        "",
        f"{len(verdicts) - n_bad} of {len(verdicts)} cells converged."
        + (f" For the others: {WHAT_TO_TRY}." if n_bad else ""),
    ]
    return lines
