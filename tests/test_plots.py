import math
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from pwprune import plots
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


def metric_rows(extra=None, dense=None):
    """dense: {seed: (female, male)} dense accuracies per seed (default DENSE for every seed)."""
    rows = []
    fin = {**FIN, **(extra or {})}

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
    # overall accuracy = mean of the groups: CE .79, .79, .82 -> .80; PW .82, .79, .84 -> .81667
    assert r.acc_ce == pytest.approx(0.80)
    assert r.acc_pw == pytest.approx(2.45 / 3)
    assert r.acc_cost == pytest.approx(0.80 - 2.45 / 3)  # negative: PW even gained accuracy
    assert r.gap_dense == pytest.approx(0.10)
    assert (r.n_seeds_ce, r.n_seeds_pw, r.n_pairs) == (3, 3, 3)
    assert r.degenerate_ce == 0 and r.note == ""

    r = cell(s, "taylor", 0.5)  # one PW seed: no interval, no test, and a note saying why
    assert r.n_pairs == 1 and math.isnan(r.p_value) and "fewer than 2" in r.note
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


@pytest.fixture
def drawn(monkeypatch):
    """Every figure plots.py saves, by file stem, still open for inspection."""
    figs = {}
    real = plots._save

    def save(fig, out_stem):
        figs[Path(out_stem).name] = fig
        return real(fig, out_stem)

    monkeypatch.setattr(plots, "_save", save)
    return figs


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
