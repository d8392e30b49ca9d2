"""The numbers behind the figures: table validation, per-trial fairness, and the CE-vs-PW summary.

Kept apart from plots.py so the statistics can be tested (and reused) without drawing anything.
A *trial* is one experiment × split × method × loss × target_reduction × seed at one stage; its
fairness is computed against the dense model of the same seed, and means / 95% intervals are
then taken over seeds (a t-interval, since there are only a handful of seeds).
"""

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from pwprune.environment import machine_id
from pwprune.names import ABLATION_LABELS, EXPERIMENT_LOSS_LABELS, GROUP_AWARE_METHODS, MAIN_LABELS, METHODS
from pwprune.power import minimal_detectable_difference

# columns of the tidy table (results/metrics.csv); a per-job file's are pwprune.stages.jobs.METRIC_COLUMNS
TABLE_COLUMNS = (
    "experiment",
    "dataset",
    "model",
    "method",
    "loss",
    "prune_loss",
    "finetune_loss",
    "target_reduction",
    "achieved_reduction",
    "counted_layers",
    "seed",
    "stage",
    "group",
    "n",
    "accuracy",
    "auroc",
    "tpr",
    "fpr",
    "params",
    "macs",
    "latency_ms",
    "degenerate",
    "split",
    "environment",
)
SHARES_COLUMNS = ("experiment", "method", "loss", "target_reduction", "seed", "epoch", "label", "group", "share")
TRIAL_KEYS = ["experiment", "split", "method", "loss", "target_reduction", "seed"]


def fairness(rows, dense_rows):
    """Fairness of a model against its dense reference, from `group_metrics`-style rows.

    gap = best - worst group accuracy; drops = {group: dense accuracy - model accuracy};
    worst_drop = the largest drop; drop_std = the *population* std (ddof=0) of the drops, the
    spread FairGRAPE reports: the groups are the whole population of groups, not a sample of them;
    max_disparity = max over groups of (the group's drop - the overall drop), the disparity that
    CEAG (Hashemizadeh et al., ICLR 2024) constrains and reports, from the `all` rows (NaN when
    either side lacks one). The `all` row and groups with NaN accuracy (no samples) are left out
    of the per-group quantities.
    """
    acc = {str(r["group"]): float(r["accuracy"]) for r in rows if str(r["group"]) != "all"}
    acc = {k: v for k, v in acc.items() if not math.isnan(v)}
    dense = {str(r["group"]): float(r["accuracy"]) for r in dense_rows if str(r["group"]) != "all"}
    dense = {k: v for k, v in dense.items() if not math.isnan(v)}
    if not acc:
        raise ValueError("fairness: rows hold no group with an accuracy (besides 'all')")
    drops = {k: dense[k] - acc[k] for k in acc if k in dense}
    missing = sorted(set(acc) - set(dense))
    if missing:
        raise ValueError(
            f"fairness: dense_rows lack group(s) {missing}; pass the dense model's rows for the same groups"
        )
    d = np.array(list(drops.values()))
    overall = _overall(dense_rows) - _overall(rows)
    return {
        "gap": max(acc.values()) - min(acc.values()),
        "drops": drops,
        "worst_drop": float(d.max()),
        "drop_std": float(d.std(ddof=0)),
        "max_disparity": float(d.max() - overall),
    }


def _overall(rows):
    acc = [float(r["accuracy"]) for r in rows if str(r["group"]) == "all"]
    return acc[0] if acc else math.nan


def equalised_odds_difference(rows):
    """The equalised-odds difference of one model from its per-group rows (`tpr`, `fpr` as
    pwprune.metrics.group_metrics writes them): the larger of the spread (max - min over groups)
    of the true-positive rates and that of the false-positive rates, as fairlearn's
    equalized_odds_difference (agg="worst_case") defines it. Binary tasks only: NaN when no
    group has a finite rate (a multi-class task); groups whose rate is undefined (no sample of
    that label) are left out of that rate's spread. The `all` row is left out."""
    spreads = []
    for rate in ("tpr", "fpr"):
        v = np.array([float(r.get(rate, math.nan)) for r in rows if str(r["group"]) != "all"], dtype=float)
        v = v[np.isfinite(v)]
        if len(v):
            spreads.append(float(v.max() - v.min()))
    return max(spreads) if spreads else math.nan


def _validate(df, path, required, what, producer):
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)}. A {what} needs the "
            f"columns {', '.join(required)} (see docs/interfaces.md); regenerate it "
            f"with {producer}."
        )


def validate_metrics(df, path):
    """Raise ValueError naming `path` and every missing column, before anything is drawn."""
    _validate(df, path, TABLE_COLUMNS, "metrics table", "the aggregate step (snakemake results/metrics.csv)")


def validate_shares(df, path):
    _validate(df, path, SHARES_COLUMNS, "loss-share table", "the aggregate step (snakemake results/loss_shares.csv)")


def _as_bool(s):
    if s.dtype == bool:
        return s
    return s.astype(str).str.strip().str.lower().isin(["true", "1", "1.0", "yes"])


def clean_metrics(df):
    """Types the CSV round trip may have blurred: group names as strings, flags as bools, the
    environment as a string ("unrecorded" where empty)."""
    df = df.copy()
    df["group"] = df["group"].astype(str)
    df["environment"] = _environment_column(df)
    df["degenerate"] = _as_bool(df["degenerate"])
    numeric = (
        "target_reduction",
        "achieved_reduction",
        "accuracy",
        "auroc",
        "tpr",
        "fpr",
        "macs",
        "params",
        "latency_ms",
    )
    for c in numeric:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["seed"] = pd.to_numeric(df["seed"]).astype(int)
    return df


def read_table(path):
    df = pd.read_csv(path)
    validate_metrics(df, path)
    return clean_metrics(df)


def read_shares(path):
    df = pd.read_csv(path)
    validate_shares(df, path)
    return df


def sort_methods(methods):
    # the paper's order (pwprune.names.METHODS, data-free first), anything unknown after it
    methods = list(dict.fromkeys(methods))
    return sorted(methods, key=lambda m: (METHODS.index(m) if m in METHODS else 99, m))


def t_interval(values):
    """(mean, half-width of the 95% t-interval) over finite values; half-width NaN below 2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


def _dense_reference(df):
    """Dense per-group accuracy per (experiment, split, seed), and a seed-averaged fallback.

    Dense rows are repeated for every method/loss/target, so they are averaged (identical copies
    average to themselves)."""
    dense = df[df["stage"] == "dense"]
    per_seed = dense.groupby(["experiment", "split", "seed", "group"])["accuracy"].mean()
    # mean over seeds of each seed's dense model (not over rows: seeds may repeat it unequally)
    pooled = per_seed.groupby(["experiment", "split", "group"]).mean()
    return per_seed, pooled


def trial_table(df, stage="finetuned"):
    """One row per trial at `stage` with its overall and worst-group accuracy and its fairness
    against the dense model of the same seed (the seed-averaged dense model if that seed has
    none): gap, worst_drop, drop_std, max_disparity (fairness), acc_drop (the dense model's
    overall accuracy minus the trial's), the equalised-odds difference eod
    (equalised_odds_difference), plus size/speed columns and the degenerate flag."""
    per_seed, pooled = _dense_reference(df)
    sub = df[df["stage"] == stage]
    out = []
    for key, t in sub.groupby(TRIAL_KEYS, sort=True):
        exp, split, seed = key[0], key[1], key[5]
        rows = t[["group", "accuracy", "tpr", "fpr"]].to_dict("records")
        groups = [r["group"] for r in rows if r["group"] != "all"]
        if not groups:
            continue
        dense_acc = pd.Series(dtype=float)
        for table, k in ((per_seed, (exp, split, seed)), (pooled, (exp, split))):
            try:
                dense_acc = table.loc[k]
                break
            except KeyError:
                pass
        dense_rows = [{"group": g, "accuracy": a} for g, a in dense_acc.items()]
        if all(g in dense_acc.index for g in groups):
            f = fairness(rows, dense_rows)
        else:  # no dense model to compare with: the gap is still defined, the drops are not
            f = {"gap": fairness(rows, rows)["gap"], "worst_drop": math.nan, "drop_std": math.nan}
            f["max_disparity"] = math.nan
        all_row = t[t["group"] == "all"]
        group_acc = t.loc[t["group"] != "all", "accuracy"]
        first = all_row.iloc[0] if len(all_row) else t.iloc[0]
        accuracy = float(all_row["accuracy"].mean()) if len(all_row) else math.nan
        out.append(
            dict(
                zip(TRIAL_KEYS, key),
                accuracy=accuracy,
                worst_group_accuracy=float(group_acc.min()),
                gap=f["gap"],
                worst_drop=f["worst_drop"],
                drop_std=f["drop_std"],
                max_disparity=f["max_disparity"],
                acc_drop=float(dense_acc.get("all", math.nan)) - accuracy,
                eod=equalised_odds_difference(rows),
                macs=float(first["macs"]),
                params=float(first["params"]),
                latency_ms=float(first["latency_ms"]),
                achieved_reduction=float(first["achieved_reduction"]),
                degenerate=bool(t["degenerate"].any()),
            )
        )
    cols = TRIAL_KEYS + [
        "accuracy",
        "worst_group_accuracy",
        "gap",
        "worst_drop",
        "drop_std",
        "max_disparity",
        "acc_drop",
        "eod",
        "macs",
        "params",
        "latency_ms",
        "achieved_reduction",
        "degenerate",
    ]
    return pd.DataFrame(out, columns=cols)


def aggregate_trials(trials, keys, value):
    """Mean, 95% half-width and seed count of `value` over seeds, per `keys`."""
    rows = []
    for key, t in trials.groupby(keys, sort=True):
        m, h = t_interval(t[value])
        rows.append(
            dict(
                zip(keys, key if isinstance(key, tuple) else (key,)),
                mean=m,
                ci95=h,
                n=int(np.isfinite(t[value].astype(float)).sum()),
                n_degenerate=int(t["degenerate"].sum()),
            )
        )
    return pd.DataFrame(rows, columns=list(keys) + ["mean", "ci95", "n", "n_degenerate"])


# the field's fairness metrics (issue 14), in the order the summary shows them: column of the
# trial table -> its name in the summary
FIELD_METRICS = {
    "accuracy": "accuracy",
    "worst_group_accuracy": "worst-group accuracy",
    "worst_drop": "worst-group drop",
    "max_disparity": "max disparity (CEAG)",
    "drop_std": "std of group drops",
    "eod": "equalised-odds difference",
}
FIELD_KEYS = ["experiment", "split", "stage", "method", "loss", "target_reduction"]


def field_metrics(metrics_df, stages=("pruned", "finetuned"), intervals=None):
    """The field's fairness metrics per experiment × split × stage × method × loss × target: for
    each column of FIELD_METRICS its mean, 95% t-interval half-width and count over seeds (the
    per-seed values are trial_table's). Long form: one row per key and metric. Fractions.

    intervals: the bootstrap table (pwprune.stages.bootstrap, results/bootstrap.csv). A cell with
    a single seed has no interval over seeds; its `boot_lo`, `boot_hi` are then that run's 95%
    bootstrap interval over test samples (NaN elsewhere, or without the table)."""
    validate_metrics(metrics_df, "metrics_df")
    df = clean_metrics(metrics_df)
    trials = pd.concat([trial_table(df, st).assign(stage=st) for st in stages], ignore_index=True)
    boot = _bootstrap_lookup(intervals)
    rows = []
    for key, t in trials.groupby(FIELD_KEYS, sort=True):
        for metric in FIELD_METRICS:
            m, h = t_interval(t[metric])
            n = int(np.isfinite(t[metric].astype(float)).sum())
            lo = hi = math.nan
            if n == 1 and boot is not None:
                seed = int(t.loc[np.isfinite(t[metric].astype(float)), "seed"].iloc[0])
                hit = boot.get((*key, seed, metric))
                if hit is not None:
                    lo, hi = hit
            rows.append(dict(zip(FIELD_KEYS, key), metric=metric, mean=m, ci95=h, n_seeds=n, boot_lo=lo, boot_hi=hi))
    return pd.DataFrame(rows, columns=FIELD_KEYS + ["metric", "mean", "ci95", "n_seeds", "boot_lo", "boot_hi"])


def _bootstrap_lookup(intervals):
    """{(experiment, split, stage, method, loss, target_reduction, seed, metric): (lo, hi)}."""
    if intervals is None:
        return None
    out = {}
    for r in intervals.itertuples(index=False):
        key = (r.experiment, r.split, r.stage, r.method, r.loss, float(r.target_reduction), int(r.seed), r.metric)
        out[key] = (float(r.lo), float(r.hi))
    return out


def field_section(table):
    """The summary's "## Fairness metrics of the field" section from a field_metrics frame, in
    percentage points (mean ± 95% t-interval half-width over seeds; a dash where a metric is
    undefined, e.g. the equalised-odds difference of a multi-class task)."""
    out = [
        "## Fairness metrics of the field",
        "",
        "Per stage, method, loss and FLOP reduction, in pp, mean ± 95% t-interval over seeds: "
        "worst-group accuracy; worst-group drop (the largest drop of a group's accuracy from the "
        "dense model's); max disparity (max over groups of the group's drop minus the overall "
        "drop, as CEAG reports it); the population std of the group drops (FairGRAPE, the paper); "
        "the equalised-odds difference (binary tasks: the larger of the spreads over groups of the "
        "true- and false-positive rates). A cell with one seed has no interval over seeds: it "
        "shows that run's 95% bootstrap interval over test samples in brackets (1,000 resamples "
        "stratified by group, paired with the dense model; results/bootstrap.csv). Also in "
        "results/fairness.csv.",
        "",
    ]
    if not len(table):
        return out + ["(no pruned or fine-tuned trials)", ""]
    values = ["mean", "ci95", "boot_lo", "boot_hi"]
    wide = table.pivot_table(index=FIELD_KEYS, columns="metric", values=values, dropna=False, sort=False)
    header = ["experiment", "split", "stage", "method", "loss", "FLOP reduction (%)", *FIELD_METRICS.values()]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, r in wide.iterrows():
        cells = [str(k) for k in key[:5]] + [f"{100 * key[5]:.4g}"]
        for m in FIELD_METRICS:
            cell = _pp(r[("mean", m)], r[("ci95", m)])
            if np.isfinite(r[("boot_lo", m)]):
                cell += f" [{100 * r[('boot_lo', m)]:.1f}, {100 * r[('boot_hi', m)]:.1f}]"
            cells.append(cell)
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def _paired_differences(ce, pw):
    """The seeds present in both, and PW - CE on each of them."""
    common = sorted(set(ce.index) & set(pw.index))
    d = (pw.loc[common] - ce.loc[common]).to_numpy(dtype=float) if common else np.array([])
    return common, d


def _paired_test(ce, pw):
    """Paired difference PW - CE over seeds present in both; (mean, ci95, p, n_pairs, note)."""
    common, d = _paired_differences(ce, pw)
    mean, half = t_interval(d)
    if len(d) < 2:
        return mean, half, math.nan, len(d), "fewer than 2 paired seeds: no t-test"
    if np.allclose(d, d[0]):
        return mean, half, math.nan, len(d), "identical difference on every seed: t-test undefined"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_rel(pw.loc[common], ce.loc[common]).pvalue)
    return mean, half, p, len(d), ""


def _paired_mde(ce, pw):
    """The minimal detectable difference (pwprune.power) of _paired_test(ce, pw) at its pair count.
    It uses the sd of the same paired differences, in their unit. NaN where that test has no p:
    fewer than 2 pairs, the same difference on every seed, or a non-finite difference."""
    _, d = _paired_differences(ce, pw)
    if len(d) < 2 or np.allclose(d, d[0]):
        return math.nan
    return minimal_detectable_difference(float(np.std(d, ddof=1)), len(d))


MDE_TEXT = (
    "MDE: the minimal detectable difference, the smallest true paired difference that this "
    "t-test would detect with 80% probability at this number of paired seeds (α 0.05 two-sided; "
    "solved exactly with the noncentral t distribution, taking the sd of the observed paired "
    "differences as the true one), in pp; – where there is no p. A non-significant difference "
    "says little about effects below the MDE: a true difference of the MDE would have been "
    "detected 4 times in 5, and a smaller one could well have been missed."
)


def summarize(metrics_df):
    """CE vs PW after fine-tuning, per experiment × split × method × target_reduction.

    Accuracy-type columns are fractions (0.05 = 5 percentage points). gap_* are mean and 95%
    t-interval half-width over seeds of the best-minus-worst group accuracy; gap_diff is the mean
    over seeds of (PW gap - CE gap), paired by seed, with its interval and a paired t-test p-value
    (NaN, with a note, when fewer than 2 seeds pair up), and gap_diff_mde, the minimal detectable
    difference of that test (pwprune.power.minimal_detectable_difference: the smallest true mean
    PW - CE that it detects with 80% probability at α 0.05 two-sided, at n_pairs and the sd of
    the paired differences; NaN where p is); acc_cost = mean CE overall accuracy -
    mean PW overall accuracy (positive = PW costs accuracy). degenerate_* count collapsed trials,
    which are included in every mean.
    """
    validate_metrics(metrics_df, "metrics_df")
    df = clean_metrics(metrics_df)
    trials = trial_table(df, "finetuned")
    dense = trial_table(df, "dense")
    keys = ["experiment", "split", "method", "target_reduction"]
    out = []
    for key, t in trials[trials["loss"].isin(list(MAIN_LABELS))].groupby(keys, sort=True):
        ce = t[t["loss"] == "ce"].set_index("seed")
        pw = t[t["loss"] == "pw"].set_index("seed")
        d = dense[(dense["experiment"] == key[0]) & (dense["split"] == key[1])]
        gap_ce, ci_ce = t_interval(ce["gap"])
        gap_pw, ci_pw = t_interval(pw["gap"])
        diff, ci_diff, p, n_pairs, note = _paired_test(ce["gap"], pw["gap"])
        mde = _paired_mde(ce["gap"], pw["gap"])
        acc_ce = t_interval(ce["accuracy"])[0]
        acc_pw = t_interval(pw["accuracy"])[0]
        if len(ce) == 0 or len(pw) == 0:
            note = f"no {'ce' if len(ce) == 0 else 'pw'} trials"
        out.append(
            dict(
                zip(keys, key),
                n_seeds_ce=len(ce),
                n_seeds_pw=len(pw),
                n_pairs=n_pairs,
                gap_dense=d.groupby("seed")["gap"].mean().mean() if len(d) else math.nan,
                gap_ce=gap_ce,
                gap_ce_ci95=ci_ce,
                gap_pw=gap_pw,
                gap_pw_ci95=ci_pw,
                gap_diff=diff,
                gap_diff_ci95=ci_diff,
                p_value=p,
                gap_diff_mde=mde,
                acc_ce=acc_ce,
                acc_pw=acc_pw,
                acc_cost=acc_ce - acc_pw,
                degenerate_ce=int(ce["degenerate"].sum()),
                degenerate_pw=int(pw["degenerate"].sum()),
                note=note,
            )
        )
    cols = keys + [
        "n_seeds_ce",
        "n_seeds_pw",
        "n_pairs",
        "gap_dense",
        "gap_ce",
        "gap_ce_ci95",
        "gap_pw",
        "gap_pw_ci95",
        "gap_diff",
        "gap_diff_ci95",
        "p_value",
        "gap_diff_mde",
        "acc_ce",
        "acc_pw",
        "acc_cost",
        "degenerate_ce",
        "degenerate_pw",
        "note",
    ]
    res = pd.DataFrame(out, columns=cols)
    rank = {m: i for i, m in enumerate(sort_methods(res["method"]))}
    res["_rank"] = res["method"].map(rank)
    res = res.sort_values(["experiment", "split", "_rank", "target_reduction"])
    res = res.drop(columns="_rank").reset_index(drop=True)
    # for write_summary: the environments of the rows behind these numbers (not a column: it
    # describes the whole table, and summary.csv keeps its columns)
    res.attrs["environments"] = environment_report(df)
    res.attrs["groups"] = group_section(df)  # likewise: the groups by name, with their counts
    return res


# ---------------------------------------------------------------- ranking (issue 14, item 5)

RANKING_COLUMNS = [
    "experiment",
    "split",
    "target_reduction",
    "rank",
    "method",
    "loss",
    "group_aware",
    "n_seeds",
    "n_degenerate",
    "worst_drop",
    "worst_drop_ci95",
    "acc_drop",
    "vs_ce_diff",
    "vs_ce_ci95",
    "vs_ce_p",
    "vs_ce_mde",
    "vs_ce_pairs",
    "vs_ce_note",
    "ref_method",
    "vs_ref_diff",
    "vs_ref_ci95",
    "vs_ref_p",
    "vs_ref_mde",
    "vs_ref_pairs",
    "vs_ref_note",
]


def _label_key(label):
    order = (*EXPERIMENT_LOSS_LABELS, *ABLATION_LABELS)
    return (order.index(label) if label in order else len(order), label)


def _method_key(method):
    return (METHODS.index(method) if method in METHODS else len(METHODS), method)


def _versus(reference, arm):
    """_paired_test of arm − reference over their shared seeds (finite values only), with the
    reason spelled out when there are too few pairs, and the test's MDE (_paired_mde):
    (diff, ci95, p, pairs, note, mde)."""
    reference, arm = reference.dropna(), arm.dropna()
    diff, half, p, n, note = _paired_test(reference, arm)
    if n < 2:
        note = f"{n} shared seed{'' if n == 1 else 's'}: no t-test (needs 2)"
    return diff, half, p, n, note, _paired_mde(reference, arm)


def ranking(metrics_df, split="test"):
    """The fairness methods ranked by worst-group drop, per experiment × target_reduction.

    A fairness method is a (pruning method, fine-tuning label) pair: fairgrape+CE, taylor+PW,
    magnitude+CEAG; the plain pairs (plain method + CE) are ranked with them. One row per pair
    present in the fine-tuned stage of `split`, ranked by the mean over seeds of its worst-group
    accuracy drop from the seed's dense model (trial_table's worst_drop; rank 1 = the smallest
    drop; a pair without a finite drop is unranked, NaN). Fractions, like summarize: n_seeds,
    n_degenerate (collapsed trials, counted and included in every mean, as in the summary),
    worst_drop and worst_drop_ci95 (mean, 95% t-interval half-width), acc_drop (mean over seeds
    of the dense model's overall accuracy − the pair's). Two paired comparisons of worst_drop,
    arm − reference over the seeds both share (negative = the arm's worst group loses less), each
    with its mean, 95% interval, paired t-test p (scipy.stats.ttest_rel), its minimal detectable
    difference (*_mde: the smallest true mean difference the test detects with 80% probability at
    α 0.05 two-sided, at that pair count and the paired differences' sd; pwprune.power; NaN where
    p is), pair count and a note giving the reason where p is NaN (fewer than 2 shared seeds, or
    the same difference on every seed; with 1 shared seed the difference is that seed's, without
    an interval):

    - vs_ce_*: against CE with the same pruning method (NaN for the CE rows). It holds the
      pruning method fixed, so it isolates what the label changes (for ceag only the
      fine-tuning: it prunes with CE; for pw both phases' loss): does the loss help?
    - vs_ref_*: against the best plain CE pair at that target (ref_method + CE: the plain
      method, not GROUP_AWARE_METHODS, fine-tuned with CE, with the lowest mean worst_drop; NaN
      for that row itself and where no plain CE pair has a finite drop). It is the strongest
      thing one would do anyway without any fairness machinery, so a fairness method that beats
      only a weak plain method (random) has not earned its cost. Since the reference is the
      best of several on these same seeds, it is favoured by chance (the winner's curse): this
      comparison leans against the fairness methods, never for them.

    Pairing by seed pairs trials grown from the same dense model on the same data, so the dense
    model's own spread drops out of the difference.
    """
    validate_metrics(metrics_df, "metrics_df")
    df = clean_metrics(metrics_df)
    trials = trial_table(df, "finetuned")
    if len(trials) and split not in set(trials["split"]):
        valid = ", ".join(sorted(map(str, trials["split"].unique())))
        raise ValueError(f"ranking: split={split!r} has no fine-tuned trials in the metrics table; valid: {valid}")
    trials = trials[trials["split"] == split]
    out = []
    for (exp, target), t in trials.groupby(["experiment", "target_reduction"], sort=True):
        arms = {k: a.set_index("seed") for k, a in t.groupby(["method", "loss"], sort=True)}
        rows = []
        for (method, loss), a in arms.items():
            mean, half = t_interval(a["worst_drop"])
            rows.append(
                dict(
                    experiment=exp,
                    split=split,
                    target_reduction=target,
                    method=method,
                    loss=loss,
                    group_aware=method in GROUP_AWARE_METHODS,
                    n_seeds=int(np.isfinite(a["worst_drop"].astype(float)).sum()),
                    n_degenerate=int(a["degenerate"].sum()),
                    worst_drop=mean,
                    worst_drop_ci95=half,
                    acc_drop=t_interval(a["acc_drop"])[0],
                )
            )
        plain_ce = [r for r in rows if r["loss"] == "ce" and not r["group_aware"] and np.isfinite(r["worst_drop"])]
        ref = min(plain_ce, key=lambda r: (r["worst_drop"], _method_key(r["method"])), default=None)
        blank = (math.nan, math.nan, math.nan, 0)
        for r in rows:
            arm = arms[(r["method"], r["loss"])]["worst_drop"]
            if r["loss"] == "ce":
                vs_ce = (*blank, "", math.nan)
            elif (r["method"], "ce") not in arms:
                vs_ce = (*blank, f"no {r['method']}+CE trials", math.nan)
            else:
                vs_ce = _versus(arms[(r["method"], "ce")]["worst_drop"], arm)
            if ref is None:
                vs_ref = (*blank, "no plain method fine-tuned with CE has a worst-group drop at this target", math.nan)
            elif r is ref:
                vs_ref = (*blank, "the best plain CE pair: the reference", math.nan)
            else:
                vs_ref = _versus(arms[(ref["method"], "ce")]["worst_drop"], arm)
            for prefix, values in (("vs_ce", vs_ce), ("vs_ref", vs_ref)):
                names = ("diff", "ci95", "p", "pairs", "note", "mde")
                r.update({f"{prefix}_{name}": v for name, v in zip(names, values, strict=True)})
            r["ref_method"] = ref["method"] if ref is not None else ""
        rows.sort(
            key=lambda r: (
                not np.isfinite(r["worst_drop"]),
                r["worst_drop"],
                _method_key(r["method"]),
                _label_key(r["loss"]),
            )
        )
        for i, r in enumerate(rows):
            r["rank"] = i + 1 if np.isfinite(r["worst_drop"]) else math.nan
        out += rows
    return pd.DataFrame(out, columns=RANKING_COLUMNS)


def _pair_name(method, loss):
    return f"{method}+{str(loss).upper()}"


def ranking_section(table):
    """The summary's "## Fairness methods ranked by worst-group drop" section from a ranking
    frame: one table per experiment × split × target, in rank order, in percentage points."""
    n_tests = int(
        np.isfinite(table["vs_ce_p"].astype(float)).sum() + np.isfinite(table["vs_ref_p"].astype(float)).sum()
    )
    keys = ["experiment", "split", "target_reduction"]
    n_tables = len(table.groupby(keys)) if len(table) else 0
    out = [
        "## Fairness methods ranked by worst-group drop",
        "",
        "Each (pruning method, fine-tuning loss) pair after fine-tuning, per FLOP reduction, ranked by "
        "its worst-group drop (the largest drop of a group's accuracy from the same seed's dense "
        "model; lower is better, rank 1 best), in pp, mean ± 95% t-interval over seeds; acc. drop: "
        "the dense model's overall accuracy − the pair's (mean). Two paired comparisons of the "
        "worst-group drop, the row − a reference over the seeds both share (negative = the row's "
        "worst group loses less), ± 95% t-interval, with the paired t-test's p: against CE with the "
        "same pruning method (does the loss help?), and against the best plain CE pair at that "
        "FLOP reduction (a method that ignores groups, fine-tuned with CE, with the lowest mean "
        "worst-group drop: the strongest thing one would do anyway; picked on these same seeds, "
        "so chance favours it). A pair with fewer seeds than the others is ranked by the mean of "
        "the seeds it has: read the seeds column. Degenerate (collapsed) trials are counted and included in the "
        f"means. The p values are unadjusted for multiple comparisons: this section makes {n_tests} "
        f"paired t-tests over {n_tables} table{'s' if n_tables != 1 else ''}, so about "
        f"{n_tests / 20:.2g} of them would be expected below 0.05 by chance alone were no pair different. "
        "With a handful of seeds a t-test detects only large differences: a non-significant "
        "difference is not evidence that two pairs are equal. " + MDE_TEXT + " In full in results/ranking.csv.",
        "",
    ]
    if not len(table):
        return out + ["(no fine-tuned trials)", ""]
    header = [
        "rank",
        "pair",
        "seeds",
        "degenerate",
        "worst-group drop (pp)",
        "acc. drop (pp)",
        "vs same method+CE (pp)",
        "p",
        "MDE (pp)",
        "vs best plain CE (pp)",
        "p",
        "MDE (pp)",
        "note",
    ]
    for (exp, split, target), t in table.groupby(keys, sort=True):
        t = t.sort_values("rank", na_position="last", kind="stable")
        ref = t["ref_method"].iloc[0]
        best = f"best plain CE: {_pair_name(ref, 'ce')}" if ref else "no plain CE pair"
        out += [f"### {exp}, {split}, FLOP reduction {100 * target:.4g}% ({best})", ""]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in t.to_dict("records"):
            notes = [f"vs {_pair_name(r['method'], 'ce')}: {r['vs_ce_note']}" if r["vs_ce_note"] else ""]
            ref_note = r["vs_ref_note"]
            if ref_note and r["ref_method"] and (r["method"], r["loss"]) != (r["ref_method"], "ce"):
                ref_note = f"vs {_pair_name(r['ref_method'], 'ce')}: {ref_note}"  # say which reference
            notes.append(ref_note)
            cells = [
                "–" if not np.isfinite(r["rank"]) else str(int(r["rank"])),
                _pair_name(r["method"], r["loss"]),
                r["n_seeds"],
                r["n_degenerate"],
                _pp(r["worst_drop"], r["worst_drop_ci95"]),
                _pp(r["acc_drop"]),
                _pp(r["vs_ce_diff"], r["vs_ce_ci95"], signed=True),
                _p(r["vs_ce_p"]),
                _pp(r["vs_ce_mde"]),
                _pp(r["vs_ref_diff"], r["vs_ref_ci95"], signed=True),
                _p(r["vs_ref_p"]),
                _pp(r["vs_ref_mde"]),
                "; ".join(n for n in notes if n),
            ]
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
        out.append("")
    return out


def _p(p):
    return "–" if not np.isfinite(p) else f"{p:.3g}"


# ---------------------------------------------------------------- numeric environments

UNRECORDED = "unrecorded"
STAGES = ("dense", "pruned", "finetuned")
STAGE_RULES = {"dense": "train_dense", "pruned": "prune", "finetuned": "finetune"}
_SPREAD = (
    "Numbers from different environments agree only within the seed spread, not bit for bit, so "
    "this comparison mixes that noise into its effects"
)


def _environment_column(df):
    """The `environment` column as strings, "unrecorded" where missing or empty (or all of it
    for a table without the column)."""
    if "environment" not in df.columns:
        return pd.Series(UNRECORDED, index=df.index, dtype=object)
    env = df["environment"].astype(object)
    env = env.where(env.notna(), UNRECORDED).astype(str).str.strip()
    return env.where(~env.isin(["", "nan", "None"]), UNRECORDED)


def _stage_key(stage):
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), stage)


def _seeds(seeds):
    """'3 seeds (0, 1, 2)'."""
    seeds = sorted(set(seeds), key=lambda s: (not isinstance(s, int), s))
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(str(s) for s in seeds)})"


def _usage(rows, with_experiment=False):
    """Which stages and seeds `rows` hold: 'dense 3 seeds (0, 1, 2); finetuned 1 seed (2)'."""
    parts = []
    for exp in sorted(rows["experiment"].unique()):
        r = rows[rows["experiment"] == exp]
        stages = "; ".join(
            f"{st} {_seeds(r.loc[r['stage'] == st, 'seed'])}" for st in sorted(r["stage"].unique(), key=_stage_key)
        )
        parts.append(f"{exp}: {stages}" if with_experiment else stages)
    return "; ".join(parts)


def _checkpoints(rows):
    """The distinct checkpoints behind `rows` (dense rows repeat per method, loss and target)."""
    keys = [c for c in ("method", "prune_loss", "finetune_loss", "loss", "target_reduction") if c in rows.columns]
    r = rows[["experiment", "stage", "seed", *keys]].astype(str)
    r.loc[rows["stage"].to_numpy() == "dense", keys] = ""
    return len(r.drop_duplicates())


def _differences(envs):
    """What tells `envs` apart: the parts of each line that not all of them share."""
    parts = [e.split(" | ") for e in envs]
    common = set.intersection(*(set(p) for p in parts))
    return " vs ".join("`" + (" | ".join(x for x in p if x not in common) or "(nothing)") + "`" for p in parts)


def _fix(out, what):
    """The advice: rerun the jobs of `out` (the rows from outside the environment to keep)."""
    dirs, rules = [], set()
    for (exp, stage), r in out.groupby(["experiment", "stage"], sort=False):
        seeds = sorted(set(r["seed"]), key=lambda s: (not isinstance(s, int), s))
        seed = str(seeds[0]) if len(seeds) == 1 else "{" + ",".join(str(x) for x in seeds) + "}"
        dirs.append((exp, _stage_key(stage), f"`results/{exp}/seed{seed}/{stage}`"))
        rules.add((_stage_key(stage), STAGE_RULES.get(stage, stage)))
    return (
        f"Fix: rerun the affected jobs in one environment ({what}): delete the affected checkpoints "
        f"under {', '.join(d for *_, d in sorted(dirs))} (their later stages rerun with them) or "
        f"`snakemake --forcerun {' '.join(r for _, r in sorted(rules))}` (every job of the rule), "
        "all on one node type, then aggregate again."
    )


def _seed_values(seed):
    """Seeds as ints where they are numbers (a table read from CSV may hold strings)."""
    num = pd.to_numeric(seed, errors="coerce")
    return [int(n) if pd.notna(n) and float(n).is_integer() else s for n, s in zip(num, seed)]


def environment_report(df, comparisons=None):
    """Which numeric environments (pwprune.environment) a tidy table's rows came from, and where
    one comparison mixes them. Torch-free.

    `comparisons`: {label: [experiments]} whose rows are compared with each other; by default
    each experiment on its own ("experiment X"). Returns (lines, warnings), markdown: `lines`
    list, per experiment, each distinct `environment` with the stages and seeds whose rows came
    from it; `warnings` ("**WARNING** ...") name, per comparison, rows from more than one machine
    (machine_id: the environment without its thread count, so CPU model or GPU, library
    versions, deterministic mode or precision differ; "unrecorded" counts as a machine of its
    own), and, per experiment and stage, seeds computed with different thread counts (each stage
    has its own configured count, so thread counts may differ between stages, not within one)."""
    d = pd.DataFrame(
        {
            "experiment": df["experiment"].astype(str).to_numpy(),
            "stage": df["stage"].astype(str).to_numpy(),
            "seed": _seed_values(df["seed"]),
            "env": _environment_column(df).to_numpy(),
        }
    )
    for c in ("method", "prune_loss", "finetune_loss", "loss", "target_reduction"):
        if c in df.columns:
            d[c] = df[c].to_numpy()
    d["machine"] = d["env"].map(machine_id)
    experiments = sorted(d["experiment"].unique())
    lines = []
    for exp in experiments:
        r = d[d["experiment"] == exp]
        lines.append(f"- **{exp}**")
        # in stage order (dense first), "unrecorded" last
        first = {e: min(_stage_key(st) for st in r.loc[r["env"] == e, "stage"]) for e in r["env"].unique()}
        for env in sorted(first, key=lambda e: (e == UNRECORDED, first[e], e)):
            note = " (written before environments were recorded)" if env == UNRECORDED else ""
            lines.append(f"  - `{env}`{note}: {_usage(r[r['env'] == env])}")

    def by_size(rows, col):
        # the value most checkpoints came from first: the one to keep
        return sorted(rows[col].unique(), key=lambda v: (-_checkpoints(rows[rows[col] == v]), v == UNRECORDED, v))

    warnings_ = []
    if comparisons is None:
        comparisons = {f"experiment {exp}": [exp] for exp in experiments}
    for label, exps in comparisons.items():
        r = d[d["experiment"].isin([str(e) for e in exps])]
        machines = by_size(r, "machine")
        if len(machines) < 2:
            continue
        many = r["experiment"].nunique() > 1
        by = "; ".join(f"`{m}` ({_usage(r[r['machine'] == m], with_experiment=many)})" for m in machines)
        if UNRECORDED in machines:
            detail = ", one of them `unrecorded` (checkpoints written before environments were recorded)"
        else:
            detail = f", which differ in {_differences(machines)}"
        warnings_.append(
            f"**WARNING** ({label}): its rows come from {len(machines)} different numeric environments"
            f"{detail}: {by}. {_SPREAD}. " + _fix(r[r["machine"] != machines[0]], f"e.g. that of `{machines[0]}`")
        )
    for exp in experiments:
        r = d[d["experiment"] == exp]
        for stage in sorted(r["stage"].unique(), key=_stage_key):
            s = r[r["stage"] == stage]
            for machine, m in s.groupby("machine", sort=True):
                envs = by_size(m, "env")
                if len(envs) < 2:
                    continue
                counts = "; ".join(f"`{e.rsplit(' | ', 1)[-1]}` ({_seeds(m.loc[m['env'] == e, 'seed'])})" for e in envs)
                warnings_.append(
                    f"**WARNING** (experiment {exp}, stage {stage}): its seeds were computed with "
                    f"different thread counts on `{machine}`: {counts}. Another thread count sums in "
                    f"another order. {_SPREAD}. "
                    + _fix(
                        m[m["env"] != envs[0]],
                        f"with the stage's configured thread count, e.g. `{envs[0].rsplit(' | ', 1)[-1]}`",
                    )
                )
    return lines, warnings_


def environment_section(lines, warnings_):
    """The "## Numeric environments" section of a summary: environment_report's (lines, warnings)
    with a header saying how to read them."""
    out = [
        "## Numeric environments",
        "",
        "The environments the checkpoints behind these numbers were computed in (device and its "
        "model, library versions, deterministic mode, precision, threads), per experiment, with "
        "the stages and seeds whose rows came from each. The same environment gives "
        "bit-identical numbers; another CPU model or GPU, other library versions, deterministic "
        "mode or precision give numbers that agree only within the seed spread. Thread counts "
        "may differ between stages (each runs with its own configured count), not between the "
        "seeds of one stage. `unrecorded`: a checkpoint written before environments were recorded.",
        "",
    ]
    out += list(lines) or ["(no rows in the metrics table)"]
    out.append("")
    for w in warnings_:
        out += [w, ""]
    if lines and not warnings_:
        out += ["No comparison mixes environments.", ""]
    return out


def _environments_of(df, metrics):
    """environment_report of `metrics` if given, else the one summarize / compare_variants
    attached to `df`."""
    if metrics is not None:
        return environment_report(metrics)
    env = df.attrs.get("environments")
    if env is None:
        return ["(unknown: no metrics table was given to the summary)"], []
    return list(env[0]), list(env[1])


def _pp(mean, half=math.nan, signed=False):
    if not np.isfinite(mean):
        return "–"
    s = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return s + (f" ± {100 * half:.1f}" if np.isfinite(half) else "")


def group_section(metrics, small=30):
    """The "## Groups" section of a summary: per experiment and evaluation split, every group by
    its name (as the prepared data's meta.json names it: e.g. "female & old" for intersectional
    groups) with its sample count, read from the dense model's rows; a group under `small`
    samples is flagged with the width of its 95% Wilson interval at 50% accuracy
    (pwprune.data.groups.wilson_width), the widest its accuracy interval can be."""
    from pwprune.data.groups import wilson_width

    out = ["## Groups", "", "Samples per group in each evaluation split (the dense model's rows).", ""]
    if metrics is None or not len(metrics):
        return out + ["(no rows in the metrics table)", ""]
    d = metrics[(metrics["stage"] == "dense") & (metrics["group"].astype(str) != "all")]
    for (exp, split), t in d.groupby(["experiment", "split"], sort=True):
        first = t[t["seed"] == t["seed"].min()].drop_duplicates("group")
        cells = []
        for g, n in zip(first["group"].astype(str), first["n"].astype(int)):
            flag = f" (< {small}: ±{50 * wilson_width(n):.0f} pp at 95%)" if n < small else ""
            cells.append(f"{g}: {n}{flag}")
        out.append(f"- {exp}, {split}: " + "; ".join(cells))
    return out + [""]


def write_summary(df, md_path, csv_path, metrics=None, warnings_=()):
    """summary.csv: the `summarize` frame as is (fractions). summary.md: the same in percentage
    points with a header saying how to read it, then the numeric environments the numbers came
    from (environment_report of `metrics`, the tidy table; by default the report `summarize`
    attached to `df`), whose warnings are also repeated above the table, as are `warnings_`
    (markdown paragraphs of other diagnostics, e.g. pwprune.convergence.summary_warnings)."""
    df.to_csv(csv_path, index=False)
    env_lines, env_warnings = _environments_of(df, metrics)
    lines = [
        "# CE vs PW fairness after fine-tuning",
        "",
        "Gap = best − worst group accuracy after fine-tuning, in percentage points (pp); "
        "mean ± 95% t-interval half-width over seeds. PW − CE is paired by seed "
        "(negative = PW is fairer); p from a paired t-test (scipy.stats.ttest_rel). " + MDE_TEXT + " "
        "Accuracy cost = CE overall accuracy − PW overall accuracy (positive = PW loses "
        "accuracy). Degenerate (collapsed) trials are counted and included in the means.",
        "",
    ]
    for w in [*warnings_, *env_warnings]:
        lines += [w, ""]
    header = [
        "experiment",
        "split",
        "method",
        "FLOP reduction (%)",
        "seeds (CE/PW)",
        "dense gap (pp)",
        "gap CE (pp)",
        "gap PW (pp)",
        "PW − CE (pp)",
        "p",
        "MDE (pp)",
        "acc. cost of PW (pp)",
        "degenerate (CE/PW)",
        "note",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in df.itertuples(index=False):
        p = "–" if not np.isfinite(r.p_value) else f"{r.p_value:.3g}"
        cells = [
            r.experiment,
            r.split,
            r.method,
            f"{100 * r.target_reduction:.4g}",
            f"{r.n_seeds_ce}/{r.n_seeds_pw}",
            _pp(r.gap_dense),
            _pp(r.gap_ce, r.gap_ce_ci95),
            _pp(r.gap_pw, r.gap_pw_ci95),
            _pp(r.gap_diff, r.gap_diff_ci95, signed=True),
            p,
            _pp(r.gap_diff_mde),
            _pp(r.acc_cost, signed=True),
            f"{r.degenerate_ce}/{r.degenerate_pw}",
            r.note or "",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if not len(df):
        lines.append("\n(no CE/PW fine-tuned trials in the metrics table)")
    groups = group_section(metrics) if metrics is not None else df.attrs.get("groups")
    if groups:  # absent only for a frame not made by summarize, without the metrics table
        lines += ["", *groups]
    lines += ["", *environment_section(env_lines, env_warnings)]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [md_path, csv_path]


# ---------------------------------------------------------------- variants (issue 19)

VARIANT_VALUES = (("gap", "gap"), ("worst_drop", "worst-group drop"), ("accuracy", "accuracy"))


def compare_variants(metrics_df, pairs):
    """Each variant experiment against its base on the same trials: per (variant, split,
    method, loss, target_reduction), the mean over seeds of variant − base for the fairness gap,
    the worst-group accuracy drop from dense and the overall accuracy, paired by seed, with 95%
    t-intervals, paired t-test p-values and each test's minimal detectable difference
    (<value>_diff_mde, as summarize's gap_diff_mde). `pairs`: [(variant, base), ...]. Fractions,
    like summarize."""
    validate_metrics(metrics_df, "metrics_df")
    metrics_df = clean_metrics(metrics_df)
    trials = trial_table(metrics_df, "finetuned")
    keys = ["split", "method", "loss", "target_reduction"]
    out = []
    for variant, base in pairs:
        v_all = trials[trials["experiment"] == variant]
        b_all = trials[trials["experiment"] == base]
        for key, v in v_all.groupby(keys, sort=True):
            sel = np.ones(len(b_all), dtype=bool)
            for k, val in zip(keys, key):
                sel &= (b_all[k] == val).to_numpy()
            b = b_all[sel].set_index("seed")
            v = v.set_index("seed")
            row = dict(variant=variant, base=base, **dict(zip(keys, key)))
            for col, _ in VARIANT_VALUES:
                diff, half, p, n, note = _paired_test(b[col], v[col])
                row.update(
                    {
                        f"{col}_base": t_interval(b[col])[0],
                        f"{col}_variant": t_interval(v[col])[0],
                        f"{col}_diff": diff,
                        f"{col}_diff_ci95": half,
                        f"{col}_p": p,
                        f"{col}_diff_mde": _paired_mde(b[col], v[col]),
                    }
                )
                row.setdefault("n_pairs", n)
                row.setdefault("note", note if not len(b) == 0 else f"no trials of {base}")
            row["degenerate_base"] = int(b["degenerate"].sum())
            row["degenerate_variant"] = int(v["degenerate"].sum())
            out.append(row)
    cols = (
        ["variant", "base"]
        + keys
        + ["n_pairs"]
        + [f"{c}_{s}" for c, _ in VARIANT_VALUES for s in ("base", "variant", "diff", "diff_ci95", "p", "diff_mde")]
        + ["degenerate_base", "degenerate_variant", "note"]
    )
    res = pd.DataFrame(out, columns=cols)
    rank = {m: i for i, m in enumerate(sort_methods(res["method"]))}
    res["_rank"] = res["method"].map(rank)
    res = res.sort_values(["variant", "split", "_rank", "loss", "target_reduction"])
    res = res.drop(columns="_rank").reset_index(drop=True)
    res.attrs["environments"] = _variant_environments(metrics_df, pairs)
    return res


def _variant_environments(metrics_df, pairs):
    """environment_report of the experiments in `pairs`, one comparison per variant and base."""
    pairs = [tuple(p) for p in pairs]
    involved = {e for p in pairs for e in p}
    rows = metrics_df[metrics_df["experiment"].isin(involved)]
    return environment_report(rows, {f"{v} vs its base {b}": [v, b] for v, b in pairs})


def write_variant_summary(df, effects, md_path, csv_path, descriptions=None, metrics=None):
    """variants csv: the compare_variants frame (fractions). md: the same in pp, then the CE-vs-PW
    table (summarize) of every experiment involved, so the PW effect can be read per variant, then
    the numeric environments of those experiments (of `metrics`, the tidy table, with one
    comparison per variant and its base; by default the report compare_variants attached to
    `df`), whose warnings are also repeated above the tables."""
    df.to_csv(csv_path, index=False)
    if metrics is not None:
        pairs = list(dict.fromkeys(zip(df["variant"], df["base"])))
        metrics = clean_metrics(metrics)
        env_lines, env_warnings = (
            _variant_environments(metrics, pairs) if pairs else environment_report(metrics.iloc[:0])
        )
    else:
        env_lines, env_warnings = _environments_of(df, None)
    lines = [
        "# Variants: the same trials with the methods run another way",
        "",
        "Each variant experiment prunes and fine-tunes the same dense models (its base's: same "
        "data, model, seeds) with other method options. Per method, loss and FLOP reduction: "
        "the base's and the variant's mean over seeds, and variant − base paired by seed "
        "(± 95% t-interval half-width; p from a paired t-test). Gap = best − worst group "
        "accuracy after fine-tuning; worst drop = the largest group accuracy drop from the "
        "seed's dense model; all in percentage points (pp). " + MDE_TEXT,
        "",
    ]
    for variant, text in (descriptions or {}).items():
        lines.append(f"- **{variant}**: {text}")
    if descriptions:
        lines.append("")
    for w in env_warnings:
        lines += [w, ""]
    header = ["variant", "base", "split", "method", "loss", "FLOP reduction (%)", "pairs"]
    for _, label in VARIANT_VALUES:
        header += [f"{label}: base (pp)", f"{label}: variant (pp)", f"{label}: variant − base (pp)", "p", "MDE (pp)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in df.to_dict("records"):
        cells = [
            r["variant"],
            r["base"],
            r["split"],
            r["method"],
            r["loss"],
            f"{100 * r['target_reduction']:.4g}",
            r["n_pairs"],
        ]
        for col, _ in VARIANT_VALUES:
            p = r[f"{col}_p"]
            cells += [
                _pp(r[f"{col}_base"]),
                _pp(r[f"{col}_variant"]),
                _pp(r[f"{col}_diff"], r[f"{col}_diff_ci95"], signed=True),
                "–" if not np.isfinite(p) else f"{p:.3g}",
                _pp(r[f"{col}_diff_mde"]),
            ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if not len(df):
        lines.append("\n(no fine-tuned trials of any variant in the metrics table)")
    lines += [
        "",
        "## CE vs PW in each experiment",
        "",
        "PW − CE of the gap, paired by seed (negative = PW is fairer), per experiment, with the "
        "paired t-test's p and its MDE (as above):",
        "",
        "| experiment | split | method | FLOP reduction (%) | gap CE (pp) | gap PW (pp) | PW − CE (pp) | p "
        "| MDE (pp) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in effects.itertuples(index=False):
        p = "–" if not np.isfinite(r.p_value) else f"{r.p_value:.3g}"
        lines.append(
            f"| {r.experiment} | {r.split} | {r.method} | {100 * r.target_reduction:.4g} | "
            f"{_pp(r.gap_ce, r.gap_ce_ci95)} | {_pp(r.gap_pw, r.gap_pw_ci95)} | "
            f"{_pp(r.gap_diff, r.gap_diff_ci95, signed=True)} | {p} | {_pp(r.gap_diff_mde)} |"
        )
    lines += ["", *environment_section(env_lines, env_warnings)]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [md_path, csv_path]
