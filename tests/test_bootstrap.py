"""Bootstrap intervals over test samples (pwprune.bootstrap) and their way into the summary."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pwprune.bootstrap import METRICS, trial_intervals
from pwprune.metrics import group_metrics
from pwprune.outputs import read_outputs, write_outputs
from pwprune.stages.bootstrap import BOOTSTRAP_COLUMNS, bootstrap_stage
from pwprune.summary import equalised_odds_difference, fairness


def predictions(n, rng, skill=(1.5, 1.0, 0.4), n_groups=3):
    """A binary task whose model is best on group 0 and worst on the last group."""
    y = rng.integers(0, 2, n)
    g = rng.integers(0, n_groups, n)
    logits = (2 * y - 1) * rng.normal(np.asarray(skill)[g], 1.0)
    return logits, y, g


def as_preds(logits, y, g):
    return {"pred": (np.asarray(logits) > 0).astype(np.int64), "y": y, "g": g}


def test_the_estimates_are_the_summarys_numbers_on_the_whole_split():
    rng = np.random.default_rng(0)
    dense_logits, y, g = predictions(600, rng)
    model_logits = dense_logits - rng.normal(0.3, 0.8, len(y)) * (2 * y - 1)
    names = ["a", "b", "c"]
    rows = group_metrics(torch.tensor(model_logits), torch.tensor(y), torch.tensor(g), names)
    dense_rows = group_metrics(torch.tensor(dense_logits), torch.tensor(y), torch.tensor(g), names)
    f = fairness(rows, dense_rows)
    got = trial_intervals(as_preds(model_logits, y, g), as_preds(dense_logits, y, g), 3, binary=True, resamples=200)
    by = {r["group"]: r for r in rows}
    assert got["accuracy"][0] == pytest.approx(by["all"]["accuracy"])
    assert got["worst_group_accuracy"][0] == pytest.approx(min(by[k]["accuracy"] for k in names))
    for m in ("worst_drop", "max_disparity", "drop_std"):
        assert got[m][0] == pytest.approx(f[m])
    assert got["eod"][0] == pytest.approx(equalised_odds_difference(rows))
    for m in METRICS:
        est, lo, hi = got[m]
        assert lo <= est + 1e-12 and est <= hi + 1e-12 and lo < hi


def test_the_model_is_paired_with_its_dense_model_on_each_resample():
    rng = np.random.default_rng(1)
    logits, y, g = predictions(500, rng)
    same = trial_intervals(as_preds(logits, y, g), as_preds(logits, y, g), 3, binary=True, resamples=300)
    # the same predictions: every resample's drop is exactly 0 (unpaired draws would spread it)
    assert same["worst_drop"] == (0.0, 0.0, 0.0)
    assert same["max_disparity"] == (0.0, 0.0, 0.0)
    assert same["accuracy"][1] < same["accuracy"][2]  # the model's own accuracy still varies


def test_intervals_narrow_with_the_square_root_of_the_test_size():
    rng = np.random.default_rng(2)
    widths = []
    for n in (400, 6400):
        logits, y, g = predictions(n, rng)
        dense = logits + 0.5 * (2 * y - 1)
        _, lo, hi = trial_intervals(as_preds(logits, y, g), as_preds(dense, y, g), 3, True, resamples=400)[
            "worst_group_accuracy"
        ]
        widths.append(hi - lo)
    assert widths[0] / widths[1] == pytest.approx(4.0, rel=0.3)  # 16x the samples, 1/4 the width


@pytest.mark.slow
def test_the_interval_covers_the_true_overall_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    p, n, covered, sims = 0.8, 300, 0, 200
    for _ in range(sims):
        g = rng.integers(0, 2, n)
        y = rng.integers(0, 2, n)
        correct = rng.random(n) < p
        pred = np.where(correct, y, 1 - y)
        _, lo, hi = trial_intervals({"pred": pred, "y": y, "g": g}, {"pred": y, "y": y, "g": g}, 2, True, 500)[
            "accuracy"
        ]
        covered += lo <= p <= hi
    # binomial sd of the coverage over 200 runs at 0.95: 0.015; a stratified bootstrap is at most
    # as wide as the plain one, so allow 0.88..0.99
    assert 0.88 <= covered / sims <= 0.99


def test_multiclass_has_no_equalised_odds_interval_and_mismatched_samples_are_refused():
    y = np.array([0, 1, 2, 2, 1, 0])
    g = np.array([0, 0, 0, 1, 1, 1])
    got = trial_intervals({"pred": y, "y": y, "g": g}, {"pred": y, "y": y, "g": g}, 2, binary=False, resamples=50)
    assert all(math.isnan(v) for v in got["eod"])
    with pytest.raises(ValueError, match="same samples in the same order"):
        trial_intervals({"pred": y, "y": y, "g": g}, {"pred": y, "y": np.roll(y, 1), "g": g}, 2, binary=False)


def outputs_of(logits, y, g, diverged=False, stage="finetuned"):
    """A checkpoint's outputs (pwprune.outputs) on one test split, two groups."""
    return {
        "splits": {"test": {"logits": np.asarray(logits, dtype=np.float32), "y": y, "g": g}},
        "group_names": ["a", "b"],
        "groups_are_classes": False,
        "stage": stage,
        "achieved_reduction": 0.5,
        "counted_layers": "all",
        "environment": "cpu fp32 1 thread",
        "diverged": diverged,
        "macs": 1000,
        "params": 10,
    }


def test_outputs_round_trip_without_pickles(tmp_path):
    path = tmp_path / "outputs.npz"
    write_outputs(path, outputs_of([0.5, -1.0], np.array([1, 1]), np.array([0, 1])))
    back = read_outputs(path)
    assert not back["diverged"] and back["group_names"] == ["a", "b"] and back["stage"] == "finetuned"
    assert back["macs"] == 1000 and back["environment"] == "cpu fp32 1 thread"
    assert back["splits"]["test"]["logits"].tolist() == [0.5, -1.0]
    assert back["splits"]["test"]["y"].tolist() == [1, 1] and back["splits"]["test"]["g"].tolist() == [0, 1]
    with np.load(path, allow_pickle=False) as z:  # plain arrays only: loads without pickles
        assert z["test.g"].dtype == np.int64 and z["test.logits"].dtype == np.float32
    path.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="cannot read model outputs"):
        read_outputs(path)


def test_bootstrap_stage_writes_every_trials_intervals_and_the_summary_uses_them_for_single_runs(tmp_path):
    from test_plots import metric_rows

    from pwprune.summary import field_metrics, field_section

    rng = np.random.default_rng(4)
    logits, y, g = predictions(300, rng, skill=(1.5, 0.5), n_groups=2)

    def write(name, shift, diverged=False):
        path = tmp_path / name / "outputs.npz"
        path.parent.mkdir(parents=True)
        write_outputs(path, outputs_of(logits - shift * (2 * y - 1), y, g, diverged=diverged))
        return str(path)

    run = dict(exp="toy", method="taylor", label="pw", target="0.5", seed=0)
    table = [{**run, "dense": write("dense", 0.0), "pruned": write("pruned", 0.6), "finetuned": write("tuned", 0.2)}]
    table.append({**table[0], "label": "ce", "finetuned": write("diverged", 0.2, diverged=True)})
    out = tmp_path / "bootstrap.csv"
    bootstrap_stage(table, out, log=lambda *_: None)
    b = pd.read_csv(out)
    assert list(b.columns) == BOOTSTRAP_COLUMNS
    assert len(b) == 2 * 2 * len(METRICS)  # 2 runs x (pruned, finetuned) x metrics
    tuned = b[(b["stage"] == "finetuned") & (b["loss"] == "pw")].set_index("metric")
    assert (tuned["lo"] <= tuned["estimate"]).all() and (tuned["estimate"] <= tuned["hi"]).all()
    assert b[(b["stage"] == "finetuned") & (b["loss"] == "ce")]["lo"].isna().all()  # diverged: none

    # the summary: taylor @ 0.5 with PW has a single seed in test_plots' table -> its bootstrap
    b["target_reduction"] = 0.5
    f = field_metrics(metric_rows(), intervals=b)
    single = f[(f["stage"] == "finetuned") & (f["method"] == "taylor") & (f["loss"] == "pw")]
    single = single[single["target_reduction"] == 0.5].set_index("metric")
    assert single.loc["worst_drop", "n_seeds"] == 1
    assert single.loc["worst_drop", "boot_lo"] == pytest.approx(tuned.loc["worst_drop", "lo"])
    several = f[(f["method"] == "magnitude") & (f["stage"] == "finetuned")]
    assert several["boot_lo"].isna().all()  # seeds give those cells their interval
    text = "\n".join(field_section(f))
    lo, hi = tuned.loc["worst_drop", ["lo", "hi"]]
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in text
