"""The fine-tuning convergence diagnostic (issue 29, item 1): per-run and per-cell verdicts
against hand arithmetic, the validation curves' table written by the aggregation, the summary's
section and warning, the headline's flag and the `convergence` figure."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from pwprune import convergence, plots
from pwprune.convergence import (
    CONVERGED,
    CURVE_COLUMNS,
    IMPROVING,
    TOO_FEW,
    cell_verdicts,
    curve_rows,
    group_verdicts,
)

IDENT = {"experiment": "toy", "method": "magnitude", "loss": "ce", "target_reduction": 0.5, "seed": 0}


def history(groups, n, early_stopping=None, val_from=1, lrs=None):
    """A fit history in pwprune.train.fit's format: {group: [accuracy per epoch]}, n = {group: n};
    epochs before `val_from` have no "val" (as a fit without validation writes them); "lr" is 1e-3
    on every epoch, or lrs[epoch - 1]."""
    epochs = len(next(iter(groups.values())))
    out = []
    for e in range(1, epochs + 1):
        lr = lrs[e - 1] if lrs else 1e-3
        h = {"epoch": e, "loss": 1.0 / e, "accuracy": 0.5, "lr": lr, "diverged": False}
        if e >= val_from:
            rows = [
                {"group": g, "n": n[g], "accuracy": acc[e - 1], "loss": 1.0 - acc[e - 1]} for g, acc in groups.items()
            ]
            h["val"] = {
                "loss": float(np.mean([r["loss"] for r in rows])),
                "accuracy": float(np.mean([r["accuracy"] for r in rows])),
                "groups": rows,
            }
        out.append(h)
    if early_stopping:
        out[-1]["early_stopping"] = early_stopping
    return out


def curves(spec, n, experiment="toy", lrs=None):
    """A convergence table: spec = {(method, target, loss, seed, group): [accuracy per epoch]}. With
    lrs (each epoch's learning rate, the same for every run), with the aggregation's "lr" column
    (pwprune.schedule.with_lr)."""
    from pwprune.schedule import CURVE_COLUMNS_WITH_LR, with_lr

    rows = []
    for (method, target, loss, seed, group), acc in spec.items():
        ident = dict(experiment=experiment, method=method, loss=loss, target_reduction=target, seed=seed)
        h = history({group: acc}, {group: n[group]}, lrs=lrs)
        rows += with_lr(curve_rows(h, ident), h) if lrs else curve_rows(h, ident)
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS_WITH_LR if lrs else CURVE_COLUMNS))


# ---- one run, by hand (the fine-tuning job's log)


def test_group_verdicts_of_a_four_epoch_history_by_hand():
    h = history(
        {"majority": [0.60, 0.70, 0.80, 0.90], "minority": [0.40, 0.55, 0.60, 0.61]},
        {"majority": 400, "minority": 100},
    )
    v = {r["group"]: r for r in group_verdicts(h)}
    # E = 4 epochs -> q = ceil(4 / 4) = 1: the last epoch minus the one before
    maj, mino = v["majority"], v["minority"]
    assert (maj["q"], maj["epochs"], maj["first"], maj["last"]) == (1, 4, 0.60, 0.90)
    # majority: gain .90 - .80 = .10; tolerance 2 sqrt(.9 x .1 / 400) sqrt(2 / 1) = 2 x .015 x 1.41421 = .042426
    assert maj["gain"] == pytest.approx(0.10)
    assert maj["tolerance"] == pytest.approx(2 * 0.015 * math.sqrt(2))
    assert maj["status"] == IMPROVING  # .10 > .0424
    # minority: gain .61 - .60 = .01; tolerance 2 sqrt(.61 x .39 / 100) sqrt(2) = 2 x .048775 x 1.41421 = .137958
    assert mino["gain"] == pytest.approx(0.01)
    assert mino["tolerance"] == pytest.approx(2 * math.sqrt(0.61 * 0.39 / 100) * math.sqrt(2))
    assert mino["status"] == CONVERGED
    (line,) = convergence.warnings(group_verdicts(h), "magnitude 50%")
    assert "group majority was still improving" in line and "+10.0 pp over the last 1 of 4" in line


def test_curve_rows_one_row_per_validated_epoch_and_group_with_early_stopping():
    stop = {"best_epoch": 3, "stopped_epoch": 5, "monitor": "loss", "restored": True}
    h = history({"a": [0.5, 0.6, 0.7, 0.7, 0.69], "b": [0.4, 0.5, 0.6, 0.6, 0.6]}, {"a": 30, "b": 20}, stop, val_from=2)
    rows = curve_rows(h, IDENT)
    assert len(rows) == 4 * 2  # epoch 1 has no "val"
    assert all(list(r) == list(CURVE_COLUMNS) for r in rows)
    assert rows[0] == {
        **IDENT,
        "epoch": 2,
        "group": "a",
        "n": 30,
        "val_accuracy": 0.6,
        "val_loss": 0.4,
        "best_epoch": 3,
    }
    assert {r["best_epoch"] for r in rows} == {3}
    # without early stopping best_epoch is nan; without validation there are no rows
    plain = curve_rows(history({"a": [0.5, 0.6]}, {"a": 30}), IDENT)
    assert len(plain) == 2 and all(math.isnan(r["best_epoch"]) for r in plain)
    assert curve_rows(history({"a": [0.5, 0.6]}, {"a": 30}, val_from=3), IDENT) == []
    with pytest.raises(ValueError, match="seed"):
        curve_rows(h, {k: v for k, v in IDENT.items() if k != "seed"})


# ---- cells over seeds, by hand (the summary and the figure)


def test_cell_verdicts_of_two_seeds_of_four_epochs_by_hand():
    spec = {
        ("magnitude", 0.5, "ce", 0, "majority"): [0.60, 0.70, 0.80, 0.90],
        ("magnitude", 0.5, "ce", 1, "majority"): [0.60, 0.70, 0.76, 0.82],
        ("magnitude", 0.5, "ce", 0, "minority"): [0.40, 0.50, 0.52, 0.50],
        ("magnitude", 0.5, "ce", 1, "minority"): [0.40, 0.50, 0.50, 0.52],
    }
    v = cell_verdicts(curves(spec, {"majority": 400, "minority": 100})).set_index("group")
    assert list(v.index) == ["majority", "minority"]
    maj = v.loc["majority"]
    # q = 1. Gains: seed 0 .90 - .80 = .10, seed 1 .82 - .76 = .06 -> mean .08, sd .04 / sqrt(2) = .028284
    assert (maj["seeds"], maj["epochs"], maj["min_epochs"]) == (2, 4, 4)
    assert maj["gain_mean"] == pytest.approx(0.08)
    assert maj["gain_sd"] == pytest.approx(0.04 / math.sqrt(2))
    assert maj["last_accuracy"] == pytest.approx(0.86)
    # binomial SE of one run's gain: sqrt(p (1 - p) / 400 x 2 / 1), p = .90 and .82:
    # squares .00045 and .000738, root mean square sqrt(.000594) = .024372, / sqrt(2 seeds) = .017234;
    # the seeds' spread: .028284 / sqrt(2) = .02, the larger -> SE .02, tolerance max(.005, .04) = .04
    assert maj["se"] == pytest.approx(0.02)
    assert maj["tolerance"] == pytest.approx(0.04)
    assert maj["status"] == IMPROVING  # .08 > .04
    mino = v.loc["minority"]
    # gains .50 - .52 = -.02 and .52 - .50 = +.02: mean 0, sd .028284; p = .50 and .52 on n = 100:
    # squares .25 / 100 x 2 = .005 and .2496 / 100 x 2 = .004992 -> RMS sqrt(.004996) = .070682,
    # / sqrt(2) = .049980 > the spread's .02 -> tolerance 2 x .049980 = .099960
    assert mino["gain_mean"] == pytest.approx(0.0, abs=1e-12)
    assert mino["se"] == pytest.approx(math.sqrt((0.005 + 0.004992) / 2) / math.sqrt(2))
    assert mino["tolerance"] == pytest.approx(2 * math.sqrt((0.005 + 0.004992) / 2) / math.sqrt(2))
    assert mino["status"] == CONVERGED


def test_one_epoch_is_too_few_epochs_even_beside_a_long_seed():
    one = cell_verdicts(curves({("random", 0.5, "pw", 0, "a"): [0.7]}, {"a": 100})).iloc[0]
    assert one["status"] == TOO_FEW and one["epochs"] == 1 and math.isnan(one["gain_mean"])
    assert group_verdicts(history({"a": [0.7]}, {"a": 100}))[0]["status"] == TOO_FEW
    mixed = {("random", 0.5, "pw", 0, "a"): [0.7] * 8, ("random", 0.5, "pw", 1, "a"): [0.6, 0.7]}
    row = cell_verdicts(curves(mixed, {"a": 100})).iloc[0]
    assert row["status"] == TOO_FEW and row["min_epochs"] == 2 and row["epochs"] == 5  # median of 8 and 2


NOISE = (0.004, -0.006, 0.002, 0.007, -0.003, -0.005, 0.006, -0.002, 0.001, -0.007, 0.005, -0.001)


def test_flat_noisy_curves_converge_rising_ones_do_not():
    flat = {("taylor", 0.75, "ce", s, "a"): [0.8 + NOISE[(e + 5 * s) % 12] for e in range(12)] for s in range(3)}
    rising = {("taylor", 0.75, "pw", s, "a"): [0.5 + (0.02 + 0.002 * s) * e for e in range(12)] for s in range(3)}
    v = cell_verdicts(curves({**flat, **rising}, {"a": 500})).set_index("loss")
    assert v.loc["ce", "status"] == CONVERGED and abs(v.loc["ce", "gain_mean"]) < 0.01
    # q = 3: the last three epochs' mean is 3 epochs above the three before: 3 x slope = .06 .. .072
    assert v.loc["pw", "status"] == IMPROVING
    assert v.loc["pw", "gain_mean"] == pytest.approx(3 * 0.022)


def test_a_curve_that_rose_early_and_then_flattened_has_converged():
    # the whole recovery happened in the first epochs: the first quarter's gain is large, the last's 0
    early = [0.30, 0.60, 0.80, 0.85, 0.86, 0.86, 0.86, 0.86]
    v = cell_verdicts(curves({("random", 0.5, "ce", s, "a"): early for s in range(2)}, {"a": 400})).iloc[0]
    assert v["gain_mean"] == pytest.approx(0.0, abs=1e-12) and v["status"] == CONVERGED
    assert group_verdicts(history({"a": early}, {"a": 400}))[0]["status"] == CONVERGED


def test_a_group_without_validation_samples_is_left_out():
    t = curves(
        {("random", 0.5, "ce", 0, "a"): [0.5] * 4, ("random", 0.5, "ce", 0, "empty"): [0.5] * 4}, {"a": 10, "empty": 0}
    )
    assert list(cell_verdicts(t)["group"]) == ["a"]


# ---- the aggregation writes results/convergence.csv


def test_aggregate_stage_writes_every_runs_validation_curves(tmp_path, monkeypatch):
    from pwprune.stages import aggregate, jobs, latency

    fake = pd.DataFrame([{c: 0 for c in jobs.METRIC_COLUMNS} | {"counted_layers": "all"}], columns=jobs.METRIC_COLUMNS)
    monkeypatch.setattr(aggregate, "checkpoint_metrics", lambda path, lat: fake.to_dict("records"))
    monkeypatch.setattr(latency, "read_latency", lambda paths: {})
    table = []
    for seed, val_from in ((0, 1), (1, 9)):  # seed 1's history has no "val"
        tuned = tmp_path / f"seed{seed}" / "finetuned"
        tuned.mkdir(parents=True)
        (tuned / "history.json").write_text(
            json.dumps(history({"a": [0.5, 0.6], "b": [0.4, 0.45]}, {"a": 9, "b": 3}, val_from=val_from))
        )
        (tuned / "loss_shares.csv").write_text("epoch,label,group,share\n1,0,a,1.0\n")
        table.append(
            dict(
                exp="toy",
                dataset="digits",
                model="small_cnn",
                method="random",
                label="ce",
                ploss="none",
                floss="ce",
                target="0.5",
                seed=str(seed),
                dense="d.npz",
                pruned="p.npz",
                finetuned=str(tuned / "outputs.npz"),
                shares=str(tuned / "loss_shares.csv"),
            )
        )
    out = tmp_path / "convergence.csv"
    aggregate.aggregate_stage(
        table, [], tmp_path / "m.csv", tmp_path / "s.csv", out_convergence=out, log=lambda *_: None
    )
    back = convergence.read_curves(out)
    assert list(back.columns) == [*CURVE_COLUMNS, "lr"]  # each epoch's learning rate (pwprune.schedule)
    assert len(back) == 2 * 2 and set(back["seed"]) == {0}  # 2 epochs x 2 groups of seed 0 only
    assert back[(back["epoch"] == 2) & (back["group"] == "b")]["val_accuracy"].tolist() == [0.45]
    assert back["lr"].tolist() == [1e-3] * 4  # the history's "lr" of each row's epoch
    # no run validated: the header alone
    aggregate.aggregate_stage(
        table[1:], [], tmp_path / "m.csv", tmp_path / "s.csv", out_convergence=out, log=lambda *_: None
    )
    assert out.read_text().strip() == ",".join([*CURVE_COLUMNS, "lr"])
    assert aggregate.history_path({"finetuned": "r/x/outputs.npz"}) == str(Path("r/x/history.json"))


# ---- the summary: section, warning near the top, headline flag


def summary_inputs(tmp_path, spec, n):
    from test_plots import metric_rows

    metrics = tmp_path / "metrics.csv"
    metric_rows().to_csv(metrics, index=False)
    conv = tmp_path / "convergence.csv"
    curves(spec, n).to_csv(conv, index=False)
    return metrics, conv


def run_summary(tmp_path, spec, n):
    from pwprune.stages.report import summary_stage

    metrics, conv = summary_inputs(tmp_path, spec, n)
    md = tmp_path / "summary.md"
    facts = summary_stage(
        metrics, md, tmp_path / "summary.csv", tmp_path / "fairness.csv", convergence_path=conv, log=lambda *_: None
    )
    return md.read_text(), facts


FLAT = {("magnitude", 0.5, "ce", s, g): [0.80] * 8 for s in range(3) for g in ("female", "male")}
# taylor 75 % PW, male: 8 epochs (q = 2), slopes .02, .03, .04 per epoch -> gains .04, .06, .08
RISING = {("taylor", 0.75, "pw", s, "male"): [0.5 + (0.02 + 0.01 * s) * e for e in range(1, 9)] for s in range(3)}


def test_summary_section_and_warning_when_a_group_is_still_improving(tmp_path):
    text, facts = run_summary(tmp_path, {**FLAT, **RISING}, {"female": 400, "male": 400})
    assert facts == {"finetuning_converged": False}
    assert "## Fine-tuning convergence" in text
    assert text.index("## Fairness methods ranked") < text.index("## Fine-tuning convergence")
    assert "gain of the last quarter is the mean validation accuracy of the last q = ⌈E/4⌉" in text
    # last epochs .66, .74, .82 (mean 74.0 %); mean gain .06, sd .02; p = .65, .725, .80 on n = 400:
    # RMS of sqrt(p(1-p)/400 x 2/2) = .022115, / sqrt(3) = .012768 > .02 / sqrt(3) = .011547 -> 2.6 pp.
    # Flat at .80: gain 0, sd 0; sqrt(.16 / 400) / sqrt(3) = .011547 -> tolerance 2.3 pp
    assert "| toy | taylor | pw | 75 | male | 3 | 8 | 74.0 | +6.0 ± 2.0 | 2.6 | **still improving** |" in text
    assert "| toy | magnitude | ce | 50 | female | 3 | 8 | 80.0 | +0.0 ± 0.0 | 2.3 | converged |" in text
    assert "2 of 3 cells converged." in text
    warning = next(line for line in text.splitlines() if line.startswith("**WARNING** (fine-tuning convergence)"))
    assert "in 1 of 3 cells" in warning
    assert "1 still improving at the end: taylor/pw/75 % group male (+6.0 pp over the last quarter)." in warning
    assert "under-fine-tuning artefact" in warning
    assert "`finetune.epochs`" in warning and "`finetune.early_stopping`" in warning
    # near the top: above the first table of the summary
    assert text.index(warning) < text.index("| experiment | split | method |")


def test_summary_is_silent_when_every_group_converged_and_says_so_without_validation(tmp_path):
    text, facts = run_summary(tmp_path, FLAT, {"female": 400, "male": 400})
    assert facts == {"finetuning_converged": True}
    assert "**WARNING** (fine-tuning convergence)" not in text and "2 of 2 cells converged." in text

    text, facts = run_summary(tmp_path, {}, {})
    assert facts == {"finetuning_converged": None}
    assert "## Fine-tuning convergence" in text and "No fine-tuning run recorded validation accuracy" in text
    assert "**WARNING** (fine-tuning convergence)" not in text


def test_too_few_epochs_warns_too(tmp_path):
    one = {("magnitude", 0.5, "ce", s, "male"): [0.7] for s in range(3)}
    text, facts = run_summary(tmp_path, one, {"male": 400})
    assert facts == {"finetuning_converged": False}
    assert "1 with too few epochs to tell (fewer than 4 validated, as few as 1): magnitude/ce/50 % group male." in text
    assert "| toy | magnitude | ce | 50 | male | 3 | 1 | 70.0 | – | – | **too few epochs** |" in text


# ---- annealed schedules (pwprune.schedule): a flat end there is not evidence of convergence


def cosine(epochs):
    """The learning rate of each epoch of a cosine schedule over `epochs` (stepped per epoch)."""
    return [1e-3 * 0.5 * (1 + math.cos(math.pi * (e - 1) / epochs)) for e in range(1, epochs + 1)]


def test_end_lr_ratios_by_hand():
    from pwprune.schedule import end_lr_ratios, with_lr

    # seed 0: 1e-3, 5e-4, 5e-5 -> 0.05; seed 1: 2e-3, 1e-3, 4e-5 -> 0.02; the cell's mean 0.035
    rows = []
    for seed, lrs in ((0, [1e-3, 5e-4, 5e-5]), (1, [2e-3, 1e-3, 4e-5])):
        h = history({"a": [0.5, 0.6, 0.6]}, {"a": 50}, lrs=lrs)
        rows += with_lr(curve_rows(h, {**IDENT, "seed": seed}), h)
    assert [r["lr"] for r in rows[:3]] == [1e-3, 5e-4, 5e-5]
    (ratio,) = end_lr_ratios(pd.DataFrame(rows))["end_lr_ratio"]
    assert ratio == pytest.approx(0.035)
    # only the validated epochs count: validated from epoch 2, seed 0's highest is 5e-4 -> 0.1
    h = history({"a": [0.5, 0.6, 0.6]}, {"a": 50}, val_from=2, lrs=[1e-3, 5e-4, 5e-5])
    (late,) = end_lr_ratios(pd.DataFrame(with_lr(curve_rows(h, IDENT), h)))["end_lr_ratio"]
    assert late == pytest.approx(0.1)
    # a history without "lr" gives NaN, and a table without the column no ratios
    plain = [{k: v for k, v in e.items() if k != "lr"} for e in history({"a": [0.5, 0.6]}, {"a": 50})]
    assert all(math.isnan(r["lr"]) for r in with_lr(curve_rows(plain, IDENT), plain))
    assert end_lr_ratios(curves(FLAT, {"female": 400, "male": 400})).empty


def test_summary_notes_converged_cells_whose_learning_rate_had_annealed(tmp_path):
    from pwprune.stages.report import summary_stage

    def summary_with(lrs, spec):
        metrics, _ = summary_inputs(tmp_path, {}, {})
        conv = tmp_path / "convergence.csv"
        curves(spec, {"female": 400, "male": 400}, lrs=lrs).to_csv(conv, index=False)
        md = tmp_path / "summary.md"
        summary_stage(metrics, md, tmp_path / "s.csv", tmp_path / "f.csv", convergence_path=conv, log=lambda *_: None)
        return md.read_text()

    # 8 cosine epochs: the last epoch's lr is 0.5 (1 + cos(7 pi / 8)) = 0.03806 of the first's. The
    # rising cell is still improving: the note counts the two converged cells only
    text = summary_with(cosine(8), {**FLAT, **RISING})
    note = next(line for line in text.splitlines() if line.startswith("**Note** (the schedule)"))
    assert "2 of the 2 converged cells ended with a learning rate annealed below 0.1 of its peak" in note
    assert "3.8 % of it, median over those cells" in note
    assert "`python benchmarks/finetune_epochs.py RUN --epochs 2E --target T`" in note
    assert text.index("2 of 3 cells converged.") < text.index(note)  # under the convergence table
    # a constant learning rate, or one that ends at a third of its peak: no note
    for lrs in ([1e-3] * 8, [1e-3] * 7 + [3.4e-4]):
        assert "**Note** (the schedule)" not in summary_with(lrs, {**FLAT, **RISING})


def test_headline_carries_the_flag(tmp_path):
    from pwprune.dvc_view import write_headline

    summary = tmp_path / "summary.csv"
    summary.write_text(
        "experiment,split,method,target_reduction,gap_ce,gap_pw,gap_diff,acc_ce,acc_pw\ne,test,taylor,0.5,.1,.1,0,.9,.9\n"
    )
    data = write_headline(summary, tmp_path / "headline.json", extra={"finetuning_converged": False})
    assert json.loads((tmp_path / "headline.json").read_text()) == data
    assert data["finetuning_converged"] is False and "r5" in data["e"]["taylor"]
    with pytest.raises(ValueError, match="experiment"):
        write_headline(summary, tmp_path / "h.json", extra={"e": 1})


# ---- the figure


def test_figure_draws_a_panel_per_method_and_target_and_a_line_per_group_and_loss(tmp_path, drawn):
    spec = {}
    for method in ("taylor", "magnitude"):
        for target in (0.5, 0.75):
            for loss in ("ce", "pw"):
                for seed in (0, 1):
                    for g, base in (("female", 0.8), ("male", 0.6)):
                        spec[(method, target, loss, seed, g)] = [base + 0.01 * seed] * 6
    # one cell still improving: taylor, 75 %, PW, male
    for seed in (0, 1):
        spec[("taylor", 0.75, "pw", seed, "male")] = [0.4 + 0.05 * e + 0.01 * seed for e in range(6)]
    paths = plots.make_figure(
        "convergence",
        None,
        None,
        "toy",
        str(tmp_path / "convergence"),
        convergence_df=curves(spec, {"female": 300, "male": 300}),
    )
    assert paths == [str(tmp_path / "convergence.png"), str(tmp_path / "convergence.pdf")]
    fig = drawn["convergence"]
    assert len(fig.axes) == 4  # 2 targets (rows) x 2 methods (columns), methods in the paper's order
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("magnitude, 50% of MACs removed") and titles[1].startswith("taylor, 50%")
    assert titles[2].startswith("magnitude, 75%")
    assert titles[3].endswith("\nNOT CONVERGED: still improving\nPW male")
    assert all(t.endswith("\nconverged") for t in titles[:3])
    colour = {g: plots.GROUP_COLORS[i] for i, g in enumerate(("female", "male"))}
    for ax in fig.axes:
        lines = {l.get_gid(): l for l in ax.lines if (l.get_gid() or "").startswith("curve:")}
        assert set(lines) == {f"curve:{loss}:{g}" for loss in ("ce", "pw") for g in ("female", "male")}
        for gid, line in lines.items():
            _, loss, g = gid.split(":")
            assert to_hex(line.get_color()) == colour[g].lower()
            assert line.get_linestyle() == {"ce": "-", "pw": "--"}[loss]
        assert len(ax.collections) == 4  # a seeds' band per line
    # the mean over seeds in %, epoch by epoch: .4 + .05 e + (0, .01)
    rising = next(l for l in fig.axes[3].lines if l.get_gid() == "curve:pw:male")
    assert list(rising.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(rising.get_ydata()) == pytest.approx([100 * (0.4 + 0.05 * e + 0.005) for e in range(6)])
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "group: female (colour)" in legend and "CE (line style)" in legend and "PW (line style)" in legend


def test_figure_without_validation_curves_is_a_placeholder(tmp_path, drawn):
    plots.make_figure("convergence", None, None, "toy", str(tmp_path / "c"), convergence_df=None)
    (ax,) = drawn["c"].axes
    assert any("convergence cannot be judged" in t.get_text() for t in ax.texts)
    empty = pd.DataFrame(columns=list(CURVE_COLUMNS))
    plots.make_figure("convergence", None, None, "toy", str(tmp_path / "c"), convergence_df=empty)
    assert any("no 'val' split" in t.get_text() for t in drawn["c"].axes[0].texts)


# ---- the shipped configuration: the converging default and its one-epoch counter-example


def test_the_default_is_judged_and_its_one_epoch_variant_is_the_warned_counter_example():
    """params.yaml keeps the pre-issue-29 schedule as default_1epoch, a variant of the default
    that changes nothing but fine-tuning; a run of it is one validated epoch, which the diagnostic
    cannot call converged (it warns, per run and per cell), while the default validates enough
    epochs for a verdict (3 per quarter at least)."""
    import yaml

    import pwprune.config as pc
    from helpers import REPO

    cfg = pc.validate(yaml.safe_load((REPO / "params.yaml").read_text()), REPO / "workflow/schemas/params.schema.yaml")
    exps = cfg["experiments"]
    default, one = exps["default"], exps["default_1epoch"]
    assert one["variant_of"] == "default"
    assert {k for k in default if default[k] != one.get(k)} == {"finetune", "description"}
    assert one["finetune"]["epochs"] == 1 and "early_stopping" not in one["finetune"]
    # the default's verdict averages at least 3 epochs in each of its last two quarters
    assert default["finetune"]["epochs"] >= 3 * 4 >= convergence.MIN_EPOCHS

    run = group_verdicts(history({"majority": [0.85], "minority": [0.45]}, {"majority": 130, "minority": 139}))
    assert [v["status"] for v in run] == [TOO_FEW, TOO_FEW]
    lines = convergence.warnings(run, "default_1epoch random ce 0.75 seed 0")
    assert len(lines) == 2 and all("default_1epoch" in line for line in lines)


@pytest.mark.slow
def test_finetune_epochs_refits_a_finished_run_and_judges_it_without_touching_it(smoke_run):
    """benchmarks/finetune_epochs.py (docs/convergence.md quotes it): the run's pruned models
    fine-tuned again for another number of epochs, judged by the summary's criterion, with the
    drops they give; the run's folder is left as it was."""
    import subprocess
    import sys

    from helpers import REPO

    def finetune_epochs(*args):
        script = REPO / "benchmarks/finetune_epochs.py"
        cmd = [sys.executable, str(script), str(smoke_run), "--target", "0.5", "--epochs", "4", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    before = {p: p.stat().st_mtime_ns for p in smoke_run.rglob("*") if p.is_file()}
    proc = finetune_epochs(
        "--configfile", str(REPO / "tests/smoke.yaml"), "--experiment", "smoke", "--batch-size", "16"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "smoke at 0.5, 4 epochs, batch 16, lr 0.001, 1 seeds" in out, out
    for method in ("random", "magnitude", "taylor", "autobot"):
        for loss in ("ce", "pw"):
            run_line = next(line for line in out.splitlines() if line.startswith(f"seed 0 {method} {loss}:"))
            assert "majority's drop" in run_line and "minority's extra drop" in run_line, run_line
            assert f"{method} {loss}: majority's drop" in out, out
            # beside the run's own models (1 epoch there): the change the 4 epochs make
            mine = out.split(f"{method} {loss}: majority's drop")[1].splitlines()[1]
            assert mine.startswith("    the run's own (1 epochs, batch 128): majority's drop"), mine
            assert "change of the extra drop" in mine, mine
            for group in ("majority", "minority"):
                assert f"{method}/{loss}/{group}: gain of the last quarter" in out, out
    assert "runs whose own log would warn:" in out and "in 8 runs" in out, out
    assert {p: p.stat().st_mtime_ns for p in smoke_run.rglob("*") if p.is_file()} == before

    bad = finetune_epochs("--experiment", "nope")
    assert bad.returncode != 0 and "experiment 'nope' is not in" in bad.stderr and "valid: " in bad.stderr, bad.stderr
