import math

import matplotlib.image as mpimg
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from pwprune.names import FIGURES, LOSS_LABELS
from pwprune.plots import LOSS_TITLES, PALETTE, loss_share_table, make_figure
from pwprune.summary import TABLE_COLUMNS, read_table, summarize, trial_table, write_summary

# finetuned per-group accuracies, (female, male) per seed; `all` = their mean (50 samples each)
FIN = {
    ("magnitude", 0.5, "ce"): {0: (0.88, 0.70), 1: (0.86, 0.72), 2: (0.90, 0.74)},
    ("magnitude", 0.5, "pw"): {0: (0.87, 0.77), 1: (0.85, 0.73), 2: (0.88, 0.80)},
    ("magnitude", 0.75, "ce"): {0: (0.84, 0.62), 1: (0.82, 0.66), 2: (0.85, 0.64)},
    ("magnitude", 0.75, "pw"): {0: (0.83, 0.70), 1: (0.82, 0.69), 2: (0.84, 0.72)},
    ("taylor", 0.5, "ce"): {0: (0.87, 0.71), 1: (0.88, 0.70), 2: (0.86, 0.73)},
    ("taylor", 0.5, "pw"): {0: (0.86, 0.76)},  # one seed only: no paired t-test possible
    ("taylor", 0.75, "ce"): {0: (0.83, 0.60), 1: (0.84, 0.63), 2: (0.50, 0.50)},  # seed 2 collapsed
    ("taylor", 0.75, "pw"): {0: (0.82, 0.70), 1: (0.83, 0.71), 2: (0.81, 0.69)},
}
DEGENERATE = {("taylor", 0.75, "ce", 2)}
DENSE = (0.90, 0.80)  # every seed's dense model: gap 0.10


def metric_rows(extra=None, dense=None, fin=None):
    """dense: {seed: (female, male)} dense accuracies per seed (default DENSE for every seed);
    fin: the fine-tuned cells to use instead of FIN (DEGENERATE still flags its trials)."""
    rows = []
    fin = {**(FIN if fin is None else fin), **(extra or {})}

    def add(method, target, loss, seed, stage, accs, degenerate=False):
        reduction = 0.0 if stage == "dense" else target
        for group, acc in (("female", accs[0]), ("male", accs[1]), ("all", sum(accs) / 2)):
            rows.append(
                dict(
                    experiment="toy",
                    dataset="digits",
                    model="small_cnn",
                    method=method,
                    loss=loss,
                    prune_loss="none" if method == "magnitude" else loss,
                    finetune_loss=loss,
                    target_reduction=target,
                    achieved_reduction=reduction,
                    seed=seed,
                    stage=stage,
                    group=group,
                    n=100 if group == "all" else 50,
                    accuracy=acc,
                    auroc=0.5 if degenerate else min(acc + 0.05, 1.0),
                    params=10_000 * (1 - reduction),
                    macs=1e6 * (1 - reduction),
                    latency_ms=0.5 * (1 - reduction) + 0.05,
                    degenerate=degenerate,
                    split="test",
                )
            )

    for (method, target, loss), seeds in fin.items():
        for seed, accs in seeds.items():
            deg = (method, target, loss, seed) in DEGENERATE
            add(method, target, loss, seed, "dense", (dense or {}).get(seed, DENSE))
            add(method, target, loss, seed, "pruned", (accs[0] - 0.1, accs[1] - 0.1), deg)
            add(method, target, loss, seed, "finetuned", accs, deg)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def share_rows():
    rows = []
    # epoch 1 shares for magnitude @ 0.75, cells (label, group) in order
    # (0, female), (0, male), (1, female), (1, male)
    last = {
        ("ce", 0): (0.40, 0.10, 0.30, 0.20),
        ("ce", 1): (0.30, 0.20, 0.30, 0.20),
        ("pw", 0): (0.30, 0.20, 0.20, 0.30),
        ("pw", 1): (0.20, 0.30, 0.20, 0.30),
    }
    cells = [(0, "female"), (0, "male"), (1, "female"), (1, "male")]
    for method in ("magnitude", "taylor"):
        for target in (0.5, 0.75):
            for loss in ("ce", "pw"):
                if (method, target, loss) == ("taylor", 0.75, "pw"):
                    continue  # taylor's highest target with both losses is then 0.5
                for seed in (0, 1):
                    for epoch in (0, 1):
                        shares = (
                            last[(loss, seed)] if (method, target, epoch) == ("magnitude", 0.75, 1) else (0.25,) * 4
                        )
                        for (label, group), share in zip(cells, shares):
                            rows.append(
                                dict(
                                    experiment="toy",
                                    method=method,
                                    loss=loss,
                                    target_reduction=target,
                                    seed=seed,
                                    epoch=epoch,
                                    label=label,
                                    group=group,
                                    share=share,
                                )
                            )
    return pd.DataFrame(rows)


def cell(summary, method, target):
    r = summary[(summary["method"] == method) & (summary["target_reduction"] == target)]
    assert len(r) == 1
    return r.iloc[0]


def test_summary_numbers_by_hand():
    s = summarize(metric_rows())
    assert len(s) == 4  # 2 methods x 2 targets
    assert list(s["method"]) == ["magnitude", "magnitude", "taylor", "taylor"]
    t975 = 4.302652729911275  # t quantile, 2 degrees of freedom

    r = cell(s, "magnitude", 0.5)
    # CE gaps: .88-.70=.18, .86-.72=.14, .90-.74=.16 -> mean .16, sd .02, half t*.02/sqrt(3)
    assert r.gap_ce == pytest.approx(0.16)
    assert r.gap_ce_ci95 == pytest.approx(t975 * 0.02 / math.sqrt(3))
    # PW gaps: .10, .12, .08 -> mean .10 with the same spread
    assert r.gap_pw == pytest.approx(0.10)
    assert r.gap_pw_ci95 == pytest.approx(t975 * 0.02 / math.sqrt(3))
    # paired PW - CE: -.08, -.02, -.08 -> mean -.06; deviations -.02, .04, -.02, squares sum
    # .0024, / 2 = .0012, sd = .034641, se = sd / sqrt(3) = .02, t = -.06 / .02 = -3 (2 df)
    assert r.gap_diff == pytest.approx(-0.06)
    assert r.gap_diff_ci95 == pytest.approx(t975 * 0.02)
    # two-sided p for t = 3 with 2 df: 2 * 0.5 * (1 - 3 / sqrt(3**2 + 2)) = 1 - 3 / sqrt(11)
    assert r.p_value == pytest.approx(1 - 3 / math.sqrt(11))
    # its minimal detectable difference: 3.2640 sd at 3 pairs (the noncentral-t answer, checked
    # by simulation in test_power.py), sd .034641 -> .11307
    assert r.gap_diff_mde == pytest.approx(3.264043549699574 * 0.02 * math.sqrt(3))
    # overall accuracy = mean of the groups: CE .79, .79, .82 -> .80; PW .82, .79, .84 -> .81667
    assert r.acc_ce == pytest.approx(0.80)
    assert r.acc_pw == pytest.approx(2.45 / 3)
    assert r.acc_cost == pytest.approx(0.80 - 2.45 / 3)  # negative: PW even gained accuracy
    assert r.gap_dense == pytest.approx(0.10)
    assert (r.n_seeds_ce, r.n_seeds_pw, r.n_pairs) == (3, 3, 3)
    assert r.degenerate_ce == 0 and r.note == ""

    r = cell(s, "taylor", 0.5)  # one PW seed: no interval, no test, and a note saying why
    assert r.n_pairs == 1 and math.isnan(r.p_value) and "fewer than 2" in r.note
    assert math.isnan(r.gap_diff_mde)  # no test, no MDE
    assert r.gap_pw == pytest.approx(0.10) and math.isnan(r.gap_pw_ci95)
    assert r.gap_diff == pytest.approx(0.10 - 0.16)  # seed 0 only: .10 - (.87 - .71)

    r = cell(s, "taylor", 0.75)  # the collapsed CE seed is counted and kept in the mean
    assert r.degenerate_ce == 1 and r.degenerate_pw == 0
    assert r.gap_ce == pytest.approx((0.23 + 0.21 + 0.0) / 3)


def test_trial_fairness_against_same_seed_dense():
    t = trial_table(metric_rows(), "finetuned")
    r = t[(t["method"] == "magnitude") & (t["target_reduction"] == 0.5) & (t["loss"] == "ce") & (t["seed"] == 0)].iloc[
        0
    ]
    # drops from dense (.90, .80): female .02, male .10 -> worst .10, population std .04
    assert r.gap == pytest.approx(0.18)
    assert r.worst_drop == pytest.approx(0.10)
    assert r.drop_std == pytest.approx(0.04)
    assert r.worst_group_accuracy == pytest.approx(0.70)
    assert r.accuracy == pytest.approx(0.79)


def test_loss_share_table_last_epoch_mean_over_seeds():
    t = loss_share_table(share_rows(), "toy")
    m = t[t["method"] == "magnitude"].set_index(["label", "group"])
    assert set(m["target_reduction"]) == {0.75}  # highest target
    # last epoch, mean over seeds 0 and 1: CE (.40+.30)/2, (.10+.20)/2, .30, .20
    assert m["ce"].to_list() == pytest.approx([0.35, 0.15, 0.30, 0.20])
    # PW (.30+.20)/2, (.20+.30)/2, .20, .30
    assert m["pw"].to_list() == pytest.approx([0.25, 0.25, 0.20, 0.30])
    assert m["change"].to_list() == pytest.approx([-0.10, 0.10, -0.10, 0.10])
    # taylor has PW shares only at 0.5, so its comparison uses 0.5
    assert set(t.loc[t["method"] == "taylor", "target_reduction"]) == {0.5}


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    rows, shares = metric_rows(), share_rows()
    return out, [p for name in FIGURES for p in make_figure(name, rows, shares, "toy", str(out / name))]


@pytest.mark.slow
def test_every_figure_written_as_png_and_pdf(figures):
    out, paths = figures
    assert sorted(paths) == sorted(str(out / f"{n}.{e}") for n in FIGURES for e in ("png", "pdf"))
    for name in FIGURES:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
        with Image.open(png) as im:
            dpi = im.info["dpi"]
            assert min(dpi) >= 150
            # pixel size = figure inches x dpi; every figure is at least 3 inches tall
            assert im.size[1] >= 3 * 150
        assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def test_ablation_with_rows_draws_panels(tmp_path, drawn):
    extra = {
        ("magnitude", 0.5, "pw_weight"): {0: (0.87, 0.75), 1: (0.86, 0.74)},
        ("magnitude", 0.75, "pw_correct"): {0: (0.83, 0.68), 1: (0.82, 0.69)},
    }
    paths = make_figure("ablation", metric_rows(extra), share_rows(), "toy", str(tmp_path / "ablation"))
    assert all((tmp_path / f"ablation.{e}").exists() for e in ("png", "pdf"))
    assert len(paths) == 2
    # what it drew: one row of panels (only magnitude has ablation rows), four columns
    fig = drawn["ablation"]
    assert len(fig.axes) == 4 and not any("not run" in t.get_text() for a in fig.axes for t in a.texts)
    gap_components = fig.axes[0]  # gap, weighting vs correction: ce, pw_weight, pw_correct, pw
    assert gap_components.get_title() == "magnitude\nweighting vs correction"
    lines = series(gap_components)
    assert lines[PALETTE["ce"]] == pytest.approx([16.0, 19.0 + 2 / 3])
    assert lines[PALETTE["pw_weight"]] == pytest.approx([12.0])  # .12 on both seeds, at 50 %
    assert lines[PALETTE["pw_correct"]] == pytest.approx([14.0])  # .15, .13 at 75 %
    assert lines[PALETTE["pw"]] == pytest.approx([10.0, 12.0 + 2 / 3])


def test_ablation_without_rows_is_the_placeholder(tmp_path, drawn):
    make_figure("ablation", metric_rows(), share_rows(), "toy", str(tmp_path / "ablation"))
    (ax,) = drawn["ablation"].axes
    assert any("Ablation not run" in t.get_text() for t in ax.texts) and not ax.containers


# ---- figures checked from the data they draw


def series(ax, marker=None):
    """{colour: y values} of the mean ± CI series drawn on ax (errorbar containers), optionally
    only those with the given marker (a group in the per-group figure)."""
    out = {}
    for c in ax.containers:
        line = c.lines[0]
        if marker is None or line.get_marker() == marker:
            key = to_hex(line.get_color())
            assert key not in out, f"two series in colour {key}"
            out[key] = list(map(float, line.get_ydata()))
    return {k.upper(): v for k, v in out.items()} | {k.lower(): v for k, v in out.items()}


def hlines(ax):
    return sorted(
        float(l.get_ydata()[0]) for l in ax.lines if len(l.get_ydata()) == 2 and l.get_ydata()[0] == l.get_ydata()[1]
    )


def test_group_performance_draws_each_groups_mean_over_seeds(tmp_path, drawn):
    make_figure("group_performance", metric_rows(), share_rows(), "toy", str(tmp_path / "g"))
    acc = drawn["g"].axes[0]
    assert acc.get_title() == "magnitude" and acc.get_ylabel() == "accuracy (%)"
    female, male = series(acc, marker="o"), series(acc, marker="s")
    # magnitude CE at 50 / 75 %: female (.88 .86 .90) -> 88, (.84 .82 .85) -> 83.67; male 72, 64
    assert female[PALETTE["ce"]] == pytest.approx([88.0, 83.0 + 2 / 3])
    assert male[PALETTE["ce"]] == pytest.approx([72.0, 64.0])
    assert female[PALETTE["pw"]] == pytest.approx([86.6666667, 83.0])
    assert male[PALETTE["pw"]] == pytest.approx([76.6666667, 70.3333333])
    assert hlines(acc) == pytest.approx([80.0, 90.0])  # the dense model per group


@pytest.mark.slow
def test_fairness_gap_draws_drops_against_each_seeds_dense_model(tmp_path, drawn):
    make_figure("fairness_gap", metric_rows(dense=SEED_DENSE), share_rows(), "toy", str(tmp_path / "f"))
    gap, drop = drawn["f"].axes[0], drawn["f"].axes[1]
    assert gap.get_title() == drop.get_title() == "magnitude"
    assert series(gap)[PALETTE["ce"]] == pytest.approx([16.0, 19.0 + 2 / 3])
    assert series(gap)[PALETTE["pw"]] == pytest.approx([10.0, 12.0 + 2 / 3])
    # worst drops of magnitude CE at 50 %, per seed: .10, .09, .11 -> 10 pp (see below)
    assert series(drop)[PALETTE["ce"]][0] == pytest.approx(10.0)


# dense accuracies (female, male) that differ between seeds, so a trial compared with another
# seed's dense model (or with their average) gets other drops than with its own
SEED_DENSE = {0: (0.90, 0.80), 1: (0.95, 0.70), 2: (0.85, 0.85)}


def test_each_trial_is_compared_with_its_own_seeds_dense_model():
    t = trial_table(metric_rows(dense=SEED_DENSE), "finetuned")
    m = t[(t["method"] == "magnitude") & (t["target_reduction"] == 0.5) & (t["loss"] == "ce")]
    m = m.set_index("seed")
    # finetuned (.88 .70), (.86 .72), (.90 .74) against their own seed's dense model:
    # drops (.02, .10), (.09, -.02), (-.05, .11)
    assert m["worst_drop"].to_list() == pytest.approx([0.10, 0.09, 0.11])
    assert m["drop_std"].to_list() == pytest.approx([0.04, 0.055, 0.08])
    # against the seed-averaged dense model (.90, .7833) seed 1 would have dropped .0633 at most
    assert m.loc[1, "worst_drop"] != pytest.approx(0.72 - (0.80 + 0.70 + 0.85) / 3 + 0.06)


def test_a_seed_without_dense_rows_falls_back_to_the_seed_averaged_dense_model():
    df = metric_rows(dense=SEED_DENSE)
    df = df[~((df["stage"] == "dense") & (df["seed"] == 2))]
    t = trial_table(df, "finetuned")
    r = t[(t["method"] == "magnitude") & (t["target_reduction"] == 0.5) & (t["loss"] == "ce") & (t["seed"] == 2)].iloc[
        0
    ]
    # seeds 0 and 1 average to dense (.925, .75); seed 2 finetuned (.90, .74): drops .025, .01
    assert r.worst_drop == pytest.approx(0.025)
    assert r.drop_std == pytest.approx(0.0075)
    assert r.gap == pytest.approx(0.16)


def test_palette_covers_every_comparison_label():
    assert set(LOSS_LABELS) <= set(PALETTE) and set(LOSS_LABELS) <= set(LOSS_TITLES)
    assert PALETTE["ce"] != PALETTE["pw"]


def test_trial_max_disparity_and_the_field_metrics_over_seeds_by_hand(tmp_path):
    from pwprune.stages.report import summary_stage
    from pwprune.summary import field_metrics

    t = trial_table(metric_rows(), "finetuned")
    r = t[(t["method"] == "magnitude") & (t["target_reduction"] == 0.5) & (t["loss"] == "ce") & (t["seed"] == 0)].iloc[
        0
    ]
    # dense all .85, fine-tuned all .79: overall drop .06; male's drop .10 exceeds it by .04
    assert r.max_disparity == pytest.approx(0.04)
    assert math.isnan(r.eod)  # the table has no rates (a multi-class-like table): undefined, not 0

    f = field_metrics(metric_rows())
    keep = (f["stage"] == "finetuned") & (f["method"] == "magnitude") & (f["loss"] == "ce")
    cell_ = f[keep & (f["target_reduction"] == 0.5)].set_index("metric")
    # worst groups .70, .72, .74 -> mean .72, sd .02 over 3 seeds
    assert cell_.loc["worst_group_accuracy", "mean"] == pytest.approx(0.72)
    assert cell_.loc["worst_group_accuracy", "ci95"] == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3))
    # max disparity per seed: overall drops .06, .06, .03; male drops .10, .08, .06 -> .04, .02, .03
    assert cell_.loc["max_disparity", "mean"] == pytest.approx(0.03)
    assert cell_.loc["max_disparity", "n_seeds"] == 3
    assert set(f["stage"]) == {"pruned", "finetuned"}

    metrics = tmp_path / "metrics.csv"
    metric_rows().to_csv(metrics, index=False)
    md, csv, fair = tmp_path / "summary.md", tmp_path / "summary.csv", tmp_path / "fairness.csv"
    summary_stage(metrics, md, csv, fair, log=lambda *_: None)
    assert len(pd.read_csv(fair)) == len(f)
    text = md.read_text()
    assert "## Fairness metrics of the field" in text
    assert "| toy | test | finetuned | magnitude | ce | 50 | 80.0 ± " in text  # accuracy first, in pp


def test_write_summary(tmp_path):
    md, csv = tmp_path / "summary.md", tmp_path / "summary.csv"
    write_summary(summarize(metric_rows()), md, csv)
    back = pd.read_csv(csv)
    assert back.loc[0, "gap_diff"] == pytest.approx(-0.06)
    text = md.read_text()
    assert "| magnitude | 50 | 3/3 |" in text
    assert "-6.0 ± 8.6" in text  # paired difference in pp: -0.06, half-width t * .02 = .0861
    # beside its p, the MDE in pp (3.2640 * .034641 = 11.3 pp), and what it means
    assert f"| -6.0 ± 8.6 | {1 - 3 / math.sqrt(11):.3g} | 11.3 |" in text
    assert "| PW − CE (pp) | p | MDE (pp) |" in text
    assert "smallest true paired difference that this t-test would detect with 80% probability" in text
    assert back.loc[0, "gap_diff_mde"] == pytest.approx(3.264043549699574 * 0.02 * math.sqrt(3))


def test_missing_columns_error_names_file_and_writes_nothing(tmp_path):
    path = tmp_path / "metrics.csv"
    metric_rows().drop(columns=["latency_ms", "auroc"]).to_csv(path, index=False)
    with pytest.raises(ValueError) as e:
        read_table(path)
    msg = str(e.value)
    assert str(path) in msg and "latency_ms" in msg and "auroc" in msg and "regenerate" in msg
    out = tmp_path / "figs"
    with pytest.raises(ValueError, match="latency_ms"):
        make_figure("tradeoff", pd.read_csv(path), share_rows(), "toy", str(out / "tradeoff"))
    assert not out.exists()


def test_unknown_figure_or_experiment_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="valid names"):
        make_figure("nope", metric_rows(), share_rows(), "toy", str(tmp_path / "x"))
    with pytest.raises(ValueError, match="'other'"):
        make_figure("tradeoff", metric_rows(), share_rows(), "other", str(tmp_path / "x"))


# ---- every method and every fine-tuning loss on the same axes (issue 14.5)

SIX_METHODS = ("random", "magnitude", "taylor", "autobot", "fairgrape", "fairprune")
THREE_LABELS = ("ce", "pw", "ceag")


def three_label_rows():
    """6 methods x 3 labels x targets 50/75 % x seeds 0-2, dense (.90, .80) for every seed.
    A generic cell (method mi, label li) has female .86 - .005 mi and male .70 + .01 li + .005 seed
    - .002 mi (- .03 at 75 %): male always drops most (.10 - .01 li - .005 seed + .002 mi, + .03).
    Two cells at 50 % are set by hand (see the test); taylor/ce at 75 %, seed 2, is flagged
    degenerate (DEGENERATE)."""
    fin = {
        (m, target, loss): {
            s: (0.86 - 0.005 * mi, 0.70 + 0.01 * li + 0.005 * s - 0.002 * mi - (0.03 if target == 0.75 else 0.0))
            for s in range(3)
        }
        for mi, m in enumerate(SIX_METHODS)
        for li, loss in enumerate(THREE_LABELS)
        for target in (0.5, 0.75)
    }
    fin[("fairgrape", 0.5, "ceag")] = {0: (0.86, 0.78), 1: (0.88, 0.76), 2: (0.87, 0.80)}
    fin[("fairprune", 0.5, "ceag")] = {0: (0.89, 0.80), 1: (0.89, 0.79), 2: (0.88, 0.80)}
    return metric_rows(fin=fin)


def cells(ax):
    """{x: (colour, mean)} of the comparison's per-cell errorbars on ax."""
    out = {}
    for c in ax.containers:
        line = c.lines[0]
        (x,), (y,) = line.get_xdata(), line.get_ydata()
        out[round(float(x), 6)] = (to_hex(line.get_color()).lower(), float(y))
    return out


def at(mi, li):
    """x of label li (of 3) at method mi: side by side, a quarter apart."""
    return round(mi + (li - 1) * 0.25, 6)


def test_comparison_draws_every_method_and_loss_by_hand(tmp_path, drawn):
    paths = make_figure("comparison", three_label_rows(), share_rows(), "toy", str(tmp_path / "comparison"))
    assert sorted(paths) == sorted(str(tmp_path / f"comparison.{e}") for e in ("png", "pdf"))
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "comparison.pdf").read_bytes()[:4] == b"%PDF"
    fig = drawn["comparison"]
    axes = fig.axes
    assert len(axes) == 6  # 3 rows x 2 targets, row-major
    worst50, worst75, overall50, gap50 = axes[0], axes[1], axes[2], axes[4]
    assert worst50.get_title().startswith("50% ") and worst75.get_title().startswith("75% ")
    assert "worst-group" in worst50.get_ylabel() and "overall" in overall50.get_ylabel()
    assert [t.get_text() for t in worst50.get_xticklabels()] == list(SIX_METHODS)  # plain first, then fair
    for ax in axes:  # one mean ± CI per method x label, every label in its own colour
        assert len(ax.containers) == len(SIX_METHODS) * len(THREE_LABELS)
        assert {c for c, _ in cells(ax).values()} == {PALETTE[l].lower() for l in THREE_LABELS}
    fg = at(SIX_METHODS.index("fairgrape"), 2)
    assert cells(worst50)[fg][0] == PALETTE["ceag"].lower()
    # fairgrape/CEAG at 50 %, against dense (.90, .80), overall .85:
    # worst drops (.04, .04, .03) -> 3.667 pp; overall (.82, .82, .835) -> drops .03 .03 .015 -> 2.5
    # pp; gaps .08 .12 .07 -> 9 pp
    assert cells(worst50)[fg][1] == pytest.approx(11 / 3)
    assert cells(overall50)[fg][1] == pytest.approx(2.5)
    assert cells(gap50)[fg][1] == pytest.approx(9.0)
    # its 95% t-interval: sd of (4, 4, 3) pp = 0.57735, half-width t(2) * sd / sqrt(3)
    (seg,) = (
        [c for c in worst50.containers if round(float(c.lines[0].get_xdata()[0]), 6) == fg][0]
        .lines[2][0]
        .get_segments()
    )
    half = 4.302652729911275 * 0.5773502691896258 / math.sqrt(3)
    assert sorted(seg[:, 1]) == pytest.approx([11 / 3 - half, 11 / 3 + half])
    # the seeds as faint dots just right of their mean (closer to it than to the next label)
    dots = [
        sorted(map(float, c.get_offsets()[:, 1]))
        for c in worst50.collections
        if len(c.get_offsets()) == 3 and all(fg < x < fg + 0.125 for x in c.get_offsets()[:, 0])
    ]
    assert dots == [pytest.approx([3.0, 4.0, 4.0])]
    # a generic cell: magnitude/pw at 50 %: male drops .10 - .01 - .005 s + .002 -> 9.2, 8.7, 8.2
    assert cells(worst50)[at(1, 1)][1] == pytest.approx(8.7)
    # the best cell per target (lowest mean worst-group drop) is ringed: fairprune/CEAG at 50 %
    # (drops .01 .01 .02 -> 1.333 pp), random/CEAG at 75 % (13 - 2 - .5 s -> 10.5 pp)
    for ax, (x, y) in ((worst50, (at(5, 2), 4 / 3)), (worst75, (at(0, 2), 10.5))):
        (ring,) = [c for c in ax.collections if c.get_gid() == "best"]
        assert list(map(float, ring.get_offsets()[0])) == pytest.approx([x, y])
        assert min(v for _, v in cells(ax).values()) == pytest.approx(y)
    # the degenerate trial (taylor/CE at 75 %, seed 2: male .676, drop 12.4 pp) is a black x there
    xs = [c for c in worst75.collections if c.get_gid() != "best" and to_hex(c.get_edgecolor()[0]) == "#000000"]
    assert [tuple(map(float, c.get_offsets()[0])) for c in xs] == [pytest.approx((at(2, 0), 12.4))]
    assert any("overall drop" in t.get_text() for t in [fig._suptitle]) and "test split" in fig._suptitle.get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [_ for _ in legend if _ in LOSS_TITLES.values()] == [LOSS_TITLES[l] for l in THREE_LABELS]


def test_comparison_without_finetuned_rows_is_a_placeholder(tmp_path, drawn):
    rows = three_label_rows()
    make_figure("comparison", rows[rows["stage"] != "finetuned"], share_rows(), "toy", str(tmp_path / "c"))
    (ax,) = drawn["c"].axes
    assert not ax.containers and any("No fine-tuned rows of CE/PW/CEAG" in t.get_text() for t in ax.texts)


CEAG_CELLS = {  # (female, male) per seed, against dense (.90, .80)
    ("magnitude", 0.5, "ceag"): {0: (0.87, 0.78), 1: (0.85, 0.76)},
    ("magnitude", 0.75, "ceag"): {0: (0.83, 0.74), 1: (0.81, 0.72)},
}


def legend_texts(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_group_performance_draws_ceag_beside_ce_and_pw(tmp_path, drawn):
    make_figure("group_performance", metric_rows(CEAG_CELLS), share_rows(), "toy", str(tmp_path / "g"))
    acc = drawn["g"].axes[0]
    female, male = series(acc, marker="o"), series(acc, marker="s")
    assert female[PALETTE["ceag"]] == pytest.approx([86.0, 82.0])
    assert male[PALETTE["ceag"]] == pytest.approx([77.0, 73.0])
    assert female[PALETTE["ce"]] == pytest.approx([88.0, 83.0 + 2 / 3])  # CE unchanged
    assert legend_texts(drawn["g"])[:3] == ["CE", "PW", LOSS_TITLES["ceag"]]
    # six series (3 labels x 2 groups) at one target, all at their own x
    x50 = [float(c.lines[0].get_xdata()[0]) for c in acc.containers]
    assert len(x50) == 6 and len(set(x50)) == 6


def test_main_figures_without_ceag_have_no_ceag_series_or_legend_entry(tmp_path, drawn):
    for name in ("group_performance", "fairness_gap", "tradeoff"):
        make_figure(name, metric_rows(), share_rows(), "toy", str(tmp_path / name))
        fig = drawn[name]
        assert LOSS_TITLES["ceag"] not in legend_texts(fig)
        assert [t for t in legend_texts(fig) if t in ("CE", "PW")] == ["CE", "PW"]
        colours = {to_hex(c.lines[0].get_color()) for ax in fig.axes for c in ax.containers}
        assert colours == {PALETTE["ce"].lower(), PALETTE["pw"].lower()}


def test_fairness_gap_and_tradeoff_draw_ceag(tmp_path, drawn):
    make_figure("fairness_gap", metric_rows(CEAG_CELLS), share_rows(), "toy", str(tmp_path / "f"))
    gap, drop = drawn["f"].axes[0], drawn["f"].axes[1]
    # magnitude/CEAG gaps .09, .09 at 50 % and .09, .09 at 75 %; worst drops .04, .04 / .08, .08
    assert series(gap)[PALETTE["ceag"]] == pytest.approx([9.0, 9.0])
    assert series(drop)[PALETTE["ceag"]] == pytest.approx([4.0, 8.0])
    assert series(gap)[PALETTE["ce"]] == pytest.approx([16.0, 19.0 + 2 / 3])
    assert LOSS_TITLES["ceag"] in legend_texts(drawn["f"])
    make_figure("tradeoff", metric_rows(CEAG_CELLS), share_rows(), "toy", str(tmp_path / "t"))
    acc = drawn["t"].axes[0]
    ceag = [c for c in acc.containers if to_hex(c.lines[0].get_color()) == PALETTE["ceag"].lower()]
    (line,) = [c.lines[0] for c in ceag]  # one line: only magnitude ran CEAG
    assert list(map(float, line.get_ydata())) == pytest.approx([81.5, 77.5])  # overall accuracy
    assert LOSS_TITLES["ceag"] in legend_texts(drawn["t"])


def test_every_figure_tells_its_labels_apart():
    from pwprune.names import ABLATION_LABELS, EXPERIMENT_LOSS_LABELS

    for drawn_together in (EXPERIMENT_LOSS_LABELS, ABLATION_LABELS):
        assert len({PALETTE[l] for l in drawn_together}) == len(drawn_together)
        assert len({LOSS_TITLES[l] for l in drawn_together}) == len(drawn_together)
    assert (PALETTE["ce"], PALETTE["pw"]) == ("#0072B2", "#D55E00")
