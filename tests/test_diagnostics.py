"""The teacher diagnostic (pwprune.diagnostics): numbers against hand computation, the
PW-acts-like-CE warning, its figure and summary section, and its rule in a real Snakemake run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import snakemake
from pwprune import diagnostics as dg
from pwprune.loss import make_loss


def _multiclass():
    """4 samples, 3 classes; logits = log(probabilities), so softmax gives these exactly."""
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # y 0, group a: s .7, right
            [0.2, 0.5, 0.3],  # y 1, group a: s .5, right
            [0.6, 0.3, 0.1],  # y 1, group b: s .3, wrong
            [0.1, 0.1, 0.8],
        ]
    )  # y 2, group b: s .8, right
    return torch.tensor(np.log(probs), dtype=torch.float32), np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1])


def _row(t, level, label, group):
    r = t[(t["level"] == level) & (t["label"] == label) & (t["group"] == group)]
    assert len(r) == 1, (level, label, group)
    return r.iloc[0]


def test_multiclass_numbers_by_hand():
    logits, y, g = _multiclass()
    t = dg.diagnose(logits, y, g, min_weight=0.5, gamma=2.0, class_names=["cat", "dog", "eel"], group_names=["a", "b"])
    # w = .5 + .5 (1 - s)^2
    w = {"s.7": 0.545, "s.5": 0.625, "s.3": 0.745, "s.8": 0.52}
    assert list(t["level"]) == ["all", "group", "group", "cell", "cell", "cell", "cell"]
    every = _row(t, "all", "all", "all")
    assert every["n"] == 4 and every["teacher_accuracy"] == pytest.approx(0.75)
    assert every["s_mean"] == pytest.approx((0.7 + 0.5 + 0.3 + 0.8) / 4, abs=1e-6)
    assert every["weight_mean"] == pytest.approx(sum(w.values()) / 4, abs=1e-6)
    assert every["weight_min"] == pytest.approx(0.52, abs=1e-6)
    assert every["weight_max"] == pytest.approx(0.745, abs=1e-6)
    # numpy's linear percentiles of [.52, .545, .625, .745]: p10 at position .3, p50 at 1.5
    assert every["weight_p10"] == pytest.approx(0.52 + 0.3 * 0.025, abs=1e-6)
    assert every["weight_p50"] == pytest.approx((0.545 + 0.625) / 2, abs=1e-6)
    a, b = _row(t, "group", "all", "a"), _row(t, "group", "all", "b")
    assert (a["n"], a["teacher_accuracy"], b["teacher_accuracy"]) == (2, 1.0, 0.5)
    assert a["weight_mean"] == pytest.approx((0.545 + 0.625) / 2, abs=1e-6)
    assert b["weight_mean"] == pytest.approx((0.745 + 0.52) / 2, abs=1e-6)
    # soft output kept where the teacher is right; its mass off the label is 1 - s there, else 0
    assert (a["soft_share"], b["soft_share"]) == (1.0, 0.5)
    assert a["target_softness"] == pytest.approx((0.3 + 0.5) / 2, abs=1e-6)
    assert b["target_softness"] == pytest.approx((0.0 + 0.2) / 2, abs=1e-6)
    wrong = _row(t, "cell", "dog", "b")
    assert (wrong["n"], wrong["teacher_accuracy"], wrong["soft_share"], wrong["target_softness"]) == (1, 0, 0, 0)
    assert wrong["weight_mean"] == pytest.approx(0.745, abs=1e-6)
    assert _row(t, "cell", "eel", "b")["weight_mean"] == pytest.approx(0.52, abs=1e-6)
    assert set(t["min_weight"]) == {0.5} and set(t["gamma"]) == {2.0}


def test_binary_single_logit_numbers_by_hand():
    p = torch.tensor([0.9, 0.9, 0.2, 0.5])
    logits = torch.log(p / (1 - p)).reshape(-1, 1)  # (N, 1), one logit
    y = np.array([1, 0, 0, 1])
    g = np.array([0, 0, 1, 1])
    t = dg.diagnose(logits, y, g, min_weight=0.25, gamma=1.0)
    # s = p y + (1-p)(1-y): .9, .1, .8, .5; p = .5 predicts 0 (p > .5 is class 1), so wrong
    # w = .25 + .75 (1 - s): .325, .925, .4, .625
    every = _row(t, "all", "all", "all")
    assert every["teacher_accuracy"] == pytest.approx(0.5)
    assert every["s_mean"] == pytest.approx((0.9 + 0.1 + 0.8 + 0.5) / 4, abs=1e-6)
    assert every["weight_mean"] == pytest.approx((0.325 + 0.925 + 0.4 + 0.625) / 4, abs=1e-6)
    # labels and groups fall back to their ids without names
    assert _row(t, "cell", "0", "0")["weight_mean"] == pytest.approx(0.925, abs=1e-6)
    assert _row(t, "cell", "1", "1")["teacher_accuracy"] == 0.0
    assert _row(t, "cell", "0", "1")["target_softness"] == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_weights_are_the_losses_own(binary):
    """The diagnostic's weights are the ones PerformanceWeightedLoss multiplies CE by."""
    gen = torch.Generator().manual_seed(0)
    n = 64
    logits = torch.randn(n, 1 if binary else 5, generator=gen) * 2
    y = torch.randint(0, 2 if binary else 5, (n,), generator=gen)
    s, _ = dg.teacher_view(logits, y.numpy())
    w = dg.pw_weights(s, 0.3, 1.7)
    student = torch.randn(logits.shape, generator=gen)
    target = y.float() if binary else y
    ratio = make_loss("pw_weight", 0.3, 1.7, reduction="none")(student, logits, target) / make_loss(
        "ce", reduction="none"
    )(student, None, target)
    np.testing.assert_allclose(w, ratio.numpy(), rtol=1e-5)


def test_bad_inputs_are_clear_errors():
    logits, y, g = _multiclass()
    with pytest.raises(ValueError, match="rows but labels"):
        dg.diagnose(logits[:3], y, g, 0.5, 1.0)
    with pytest.raises(ValueError, match="labels must be in"):
        dg.diagnose(logits, np.array([0, 1, 3, 2]), g, 0.5, 1.0)
    with pytest.raises(ValueError, match="min_weight"):
        dg.diagnose(logits, y, g, 1.5, 1.0)


def _saturated(minority_hard=False):
    """A teacher that memorised its training set: margin 12 on the true class everywhere (the
    minority group 1 optionally wrong on half its samples)."""
    y = np.array([0, 1] * 20 + [0, 1] * 2)
    g = np.array([0] * 40 + [1] * 4)
    logits = torch.full((len(y), 2), -6.0)
    logits[torch.arange(len(y)), torch.as_tensor(y)] = 6.0
    if minority_hard:
        logits[40:42] = logits[40:42].flip(1)
    return logits, y, g


def test_warning_fires_on_a_saturated_teacher_and_says_why_and_what_to_try():
    logits, y, g = _saturated()
    t = dg.diagnose(logits, y, g, 0.5, 1.0, ["no", "yes"], ["major", "minor"])
    text = dg.uniform_weight_warning(t)
    assert text is not None
    assert "min_weight=0.5, gamma=1" in text and "accuracy 100.0%" in text
    # per-cell numbers: every cell at the floor
    for lab in ("no", "yes"):
        for grp in ("major", "minor"):
            assert f"label {lab} / {grp}" in text
    assert text.count("mean weight 0.500") == 4
    assert "What to try" in text and "augment" in text and "min_weight" in text
    # weighting off (m = 1) on the same teacher: still CE-like
    assert dg.uniform_weight_warning(dg.diagnose(logits, y, g, 1.0, 1.0)) is not None


def test_warning_silent_where_pw_can_act():
    logits, y, g = _multiclass()
    assert dg.uniform_weight_warning(dg.diagnose(logits, y, g, 0.5, 2.0)) is None
    # a saturated teacher that still gets the minority wrong weights that cell up: PW acts
    logits, y, g = _saturated(minority_hard=True)
    assert dg.uniform_weight_warning(dg.diagnose(logits, y, g, 0.5, 1.0)) is None


def test_warning_fires_on_a_memorising_teacher_with_one_slightly_soft_cell():
    """The first default (digits_memorised) as measured: every training image right, weights
    within 4% across cells, but a few minority images at p(true) ~0.85, so one small cell's
    targets carry ~4% off the true label. PW is CE up to a constant there: it must warn."""
    y = np.array([0, 1] * 50 + [0, 1] * 3)
    g = np.array([0] * 100 + [1] * 6)
    p_true = np.full(len(y), 0.995)
    p_true[101::2] = 0.96  # minority, label 1: 3 images at 0.96 -> softness 0.04
    logits = torch.zeros(len(y), 2)
    margin = torch.as_tensor(np.log(p_true / (1 - p_true)), dtype=torch.float32)
    logits[torch.arange(len(y)), torch.as_tensor(y)] = margin
    t = dg.diagnose(logits, y, g, 0.5, 1.0)
    c = t[t["level"] == "cell"]
    assert c["weight_mean"].max() / c["weight_mean"].min() < 1.05
    assert c["target_softness"].max() == pytest.approx(0.04, abs=1e-4)
    assert dg.uniform_weight_warning(t) is not None
    # softer targets in that cell (p(true) 0.8: half of label smoothing 0.1 and more) act: silent
    p_true[101::2] = 0.8
    logits[torch.arange(len(y)), torch.as_tensor(y)] = torch.as_tensor(
        np.log(p_true / (1 - p_true)), dtype=torch.float32
    )
    t = dg.diagnose(logits, y, g, 0.95, 1.0)
    assert dg.uniform_weight_warning(t) is None


def test_warning_needs_both_parts_inert():
    """min_weight .95 makes the cell weights nearly equal by construction, but an uncertain
    teacher's soft targets still differ from CE's: no warning."""
    logits, y, g = _multiclass()
    t = dg.diagnose(logits, y, g, 0.95, 1.0)
    c = t[t["level"] == "cell"]
    assert c["weight_mean"].max() / c["weight_mean"].min() < dg.WEIGHT_RATIO_LIMIT
    assert dg.uniform_weight_warning(t) is None


def test_warning_picks_one_setting_of_several():
    logits, y, g = _saturated()
    t = pd.concat([dg.diagnose(logits, y, g, 0.5, 1.0), dg.diagnose(logits, y, g, 0.0, 0.1)])
    with pytest.raises(ValueError, match="2 PW settings"):
        dg.uniform_weight_warning(t)
    assert dg.uniform_weight_warning(t, 0.5, 1.0) is not None
    # m = 0 with gamma .1 lifts the tiny errors (1 - s ~ 6e-6) to weights ~.3, but every sample
    # is equally sure, so the cells' ratio stays 1: it still warns
    assert dg.uniform_weight_warning(t, 0.0, 0.1) is not None


def _file_frame(seed_logits, settings=((0.5, 1.0),), experiment="toy"):
    frames = []
    for seed, (logits, y, g) in seed_logits.items():
        for m, gamma in settings:
            t = dg.diagnose(logits, y, g, m, gamma, ["no", "yes"], ["major", "minor"])
            t.insert(0, "methods", "taylor")
            t.insert(0, "seed", seed)
            t.insert(0, "experiment", experiment)
            frames.append(t)
    return pd.concat(frames, ignore_index=True)


def test_figure_draws_seed_means_and_ranges():
    sat = _saturated()
    hard = _saturated(minority_hard=True)
    d = _file_frame({0: sat, 1: hard}, settings=((0.5, 1.0), (0.2, 1.0)))
    fig = dg.draw_teacher_figure(d, "toy")
    ax_w, ax_a = fig.axes[:2]
    cells = [("no", "major"), ("no", "minor"), ("yes", "major"), ("yes", "minor")]
    c = d[d["level"] == "cell"]
    bars = [b for b in ax_w.containers if hasattr(b, "patches")]
    assert len(bars) == 2  # one bar series per PW setting, labelled with it
    by_m = {float(b.get_label().split()[1].rstrip(",")): b for b in bars}
    assert set(by_m) == {0.5, 0.2}
    for m, container in by_m.items():
        rows = [
            c[(c["min_weight"] == m) & (c["label"] == lab) & (c["group"] == grp)]["weight_mean"] for lab, grp in cells
        ]
        np.testing.assert_allclose([p.get_height() for p in container.patches], [r.mean() for r in rows], rtol=1e-9)
        # error bars span the seeds' values: the vertical segment of each bar
        segments = container.errorbar.lines[2][0].get_segments()
        np.testing.assert_allclose(
            [(sg[:, 1].min(), sg[:, 1].max()) for sg in segments], [(r.min(), r.max()) for r in rows], atol=1e-9
        )
    # minority "no" cell at m .5: seed 0 sure of both samples (~.5), seed 1 wrong on one (.75)
    sure = 0.5 + 0.5 * (1 - 1 / (1 + math.exp(-12)))
    assert by_m[0.5].patches[1].get_height() == pytest.approx((sure + 0.75) / 2)
    assert by_m[0.5].patches[0].get_height() == pytest.approx(sure)
    (acc_bars,) = [b for b in ax_a.containers if hasattr(b, "patches")]
    acc = [p.get_height() for p in acc_bars.patches]
    want = [
        100 * c[(c["min_weight"] == 0.5) & (c["label"] == lab) & (c["group"] == grp)]["teacher_accuracy"].mean()
        for lab, grp in cells
    ]
    np.testing.assert_allclose(acc, want)
    assert acc[1] == pytest.approx(75.0)  # minority "no": 100% (seed 0) and 50% (seed 1)
    # seed 0 is saturated: the title says the warning fired, for that seed only
    assert "WARNING" in fig._suptitle.get_text() and "[0]" in fig._suptitle.get_text()
    quiet = dg.draw_teacher_figure(_file_frame({1: hard}), "toy")
    assert "WARNING" not in quiet._suptitle.get_text()


def test_summary_section_averages_seeds_and_repeats_the_warning(tmp_path):
    d = _file_frame({0: _saturated(), 1: _saturated(minority_hard=True)})
    paths = []
    for seed, t in d.groupby("seed"):
        paths.append(tmp_path / f"seed{seed}.csv")
        t.to_csv(paths[-1], index=False)
    md = tmp_path / "summary.md"
    md.write_text("# existing\n")
    dg.append_summary(md, paths, ["toy"])
    text = md.read_text()
    assert text.startswith("# existing\n") and "## Teacher diagnostic: toy" in text
    row = next(line for line in text.splitlines() if "| no | minor |" in line)
    cells = [x.strip() for x in row.strip("|").split("|")]
    # n, teacher train acc. (mean of 100 and 50), mean weight (seed 0 ~.5, seed 1 .75), soft share
    assert cells[4:] == ["2", "75.0", "0.625", "75.0"]
    warnings = [line for line in text.splitlines() if line.startswith("**WARNING**")]
    assert len(warnings) == 1 and "seed 0" in warnings[0] and "What to try" in warnings[0]


def test_foreign_csv_is_refused(tmp_path):
    p = tmp_path / "x.csv"
    pd.DataFrame({"a": [1]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match="lacks column"):
        dg.read_diagnostics([p])


# ---------------------------------------------------------------- the rule in a real run


def _job_counts(out: str) -> dict:
    """{rule: count} from a Snakemake dry run's "Job stats" table."""
    lines = out.splitlines()
    start = lines.index("Job stats:") + 3
    counts = {}
    for line in lines[start:]:
        parts = line.split()
        if not parts or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.e2e
@pytest.mark.slow
def test_rule_per_seed_and_gamma_reruns_only_the_diagnostic(repo_copy):
    two_seeds = repo_copy / "two_seeds.yaml"
    two_seeds.write_text("experiments:\n  smoke:\n    seeds: [0, 1]\n    train: {epochs: 1}\n")
    conf = ["--configfile", "tests/smoke.yaml", str(two_seeds)]
    targets = [f"results/smoke/seed{s}/dense/teacher_diagnostic.csv" for s in (0, 1)]
    snakemake(repo_copy, *targets, "results/figures/smoke/teacher_weights.png", "--cores", "2", *conf)
    for s in (0, 1):
        t = dg.read_diagnostics([repo_copy / targets[s]])
        assert set(t["seed"]) == {s} and set(t["experiment"]) == {"smoke"}
        assert set(zip(t["min_weight"], t["gamma"])) == {(0.5, 1.0)}
        assert t.loc[t["level"] == "all", "n"].iloc[0] == t.loc[t["level"] == "cell", "n"].sum()
        log = (repo_copy / f"logs/smoke/seed{s}/teacher_diagnostic.log").read_text()
        assert "teacher diagnostic, experiment smoke" in log and "weight_mean" in log
    assert (repo_copy / "results/figures/smoke/teacher_weights.pdf").stat().st_size > 0
    # nothing to do when nothing changed
    assert "Nothing to be done" in snakemake(repo_copy, *targets, "-n", *conf).stdout
    # a new gamma reruns the diagnostic of every seed, never dense training
    gamma = repo_copy / "gamma.yaml"
    gamma.write_text("experiments:\n  smoke:\n    pw: {min_weight: 0.5, gamma: 2.0}\n")
    counts = _job_counts(snakemake(repo_copy, *targets, "-n", *conf, str(gamma)).stdout)
    assert counts == {"teacher_diagnostic": 2}
    # and the whole grid would redraw the teacher figure from them
    counts = _job_counts(
        snakemake(repo_copy, "results/figures/smoke/teacher_weights.png", "-n", *conf, str(gamma)).stdout
    )
    assert counts == {"teacher_diagnostic": 2, "teacher_figure": 1}


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_run_shows_the_diagnostic(smoke_run):
    listed = (smoke_run / "results/figures/all").read_text().split()
    assert "results/figures/smoke/teacher_weights.png" in listed
    csv = smoke_run / "results/smoke/seed0/dense/teacher_diagnostic.csv"
    t = dg.read_diagnostics([csv])
    summary = (smoke_run / "results/summary.md").read_text()
    assert "# CE vs PW fairness after fine-tuning" in summary  # the existing table stays
    section = summary[summary.index("## Teacher diagnostic: smoke") :]
    for r in t[t["level"] == "cell"].itertuples():
        assert f"| {r.label} | {r.group} | {r.n} | {100 * r.teacher_accuracy:.1f} | {r.weight_mean:.3f} |" in section
    fires = dg.uniform_weight_warning(t) is not None
    assert ("**WARNING**" in section) == fires


def test_figure_draws_seeds_that_agree_exactly():
    """Every seed's teacher accuracy the same value: pandas' mean of equal floats can land an ulp
    below their min (here 551/552, as the default run's seeds gave), which matplotlib refused as a
    negative error bar, stopping the default run's teacher figure."""
    d = _file_frame({s: _saturated() for s in range(5)})
    d["teacher_accuracy"] = 551 / 552
    c = dg.cell_means(d)
    assert (100 * c["teacher_accuracy"] < 100 * c["accuracy_lo"]).any()  # the case, reproduced
    fig = dg.draw_teacher_figure(d, "toy")
    assert len(fig.axes) >= 2
