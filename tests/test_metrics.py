import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pwprune.inference import count_macs_params, latency_ms, predict
from pwprune.metrics import group_metrics
from pwprune.summary import fairness

# binary single-logit case; predicted class = logit > 0
# group 0 (female): logits [2, -1, 0.5]        labels [1, 0, 0]    preds [1, 0, 1]
# group 1 (male):   logits [-3, 1, -0.5, 0.2]  labels [0, 1, 1, 0] preds [0, 1, 0, 1]
LOGITS = [2.0, -1.0, 0.5, -3.0, 1.0, -0.5, 0.2]
LABELS = [1, 0, 0, 0, 1, 1, 0]
GROUPS = [0, 0, 0, 1, 1, 1, 1]


def by_group(rows):
    return {r["group"]: r for r in rows}


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_binary_group_metrics_by_hand(shape):
    logits = torch.tensor(LOGITS)
    if shape == "column":
        logits = logits[:, None]  # (N, 1) is the same single logit
    rows = by_group(group_metrics(logits, torch.tensor(LABELS), torch.tensor(GROUPS), ["female", "male"]))
    assert list(rows) == ["female", "male", "all"]
    # female: correct = [1==1, 0==0, 1!=0] -> 2/3; AUROC: the positive (2) beats both negatives -> 1
    assert rows["female"]["n"] == 3
    assert rows["female"]["accuracy"] == pytest.approx(2 / 3)
    assert rows["female"]["auroc"] == pytest.approx(1.0)
    # male: correct = [0==0, 1==1, 0!=1, 1!=0] -> 2/4; AUROC: positives {1, -0.5} vs negatives
    # {-3, 0.2}: 1>-3, 1>0.2, -0.5>-3 win, -0.5<0.2 loses -> 3/4
    assert rows["male"]["n"] == 4
    assert rows["male"]["accuracy"] == pytest.approx(0.5)
    assert rows["male"]["auroc"] == pytest.approx(0.75)
    # all: 4 of 7 correct; AUROC positives {2, 1, -0.5} vs negatives {-1, 0.5, -3, 0.2}:
    # 2 beats 4, 1 beats 4, -0.5 beats 2 (-1, -3) -> 10/12
    assert rows["all"]["n"] == 7
    assert rows["all"]["accuracy"] == pytest.approx(4 / 7)
    assert rows["all"]["auroc"] == pytest.approx(10 / 12)
    assert not any(r["degenerate"] for r in rows.values())


def test_single_class_group_has_nan_auroc():
    # group 1 holds only label 1: AUROC undefined there, still defined overall
    rows = by_group(
        group_metrics(
            torch.tensor([1.0, -1.0, 2.0, -2.0]), torch.tensor([1, 0, 1, 1]), torch.tensor([0, 0, 1, 1]), ["a", "b"]
        )
    )
    assert math.isnan(rows["b"]["auroc"])
    assert rows["b"]["accuracy"] == pytest.approx(0.5)  # preds [1, 0] vs labels [1, 1]
    assert rows["a"]["auroc"] == pytest.approx(1.0)
    assert not math.isnan(rows["all"]["auroc"])


def test_degenerate_flag_when_one_class_predicted_everywhere():
    rows = group_metrics(
        torch.tensor([0.3, 1.0, 2.0, 0.1]), torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]), ["a", "b"]
    )
    assert all(r["degenerate"] for r in rows)  # a model-level flag, repeated on every row
    assert by_group(rows)["all"]["accuracy"] == pytest.approx(0.5)


def test_diverged_model_gives_nan_auroc_not_an_error():
    rows = by_group(
        group_metrics(
            torch.full((4,), float("nan")), torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]), ["a", "b"]
        )
    )
    assert math.isnan(rows["all"]["auroc"])
    assert rows["all"]["degenerate"]  # NaN > 0 is False: class 0 everywhere


def test_multiclass_accuracy_and_ovr_auroc():
    logits = torch.tensor(
        [
            [2.0, 0.0, 0.0],  # label 0, pred 0
            [0.0, 2.0, 0.0],  # label 1, pred 1
            [0.0, 1.0, 0.5],  # label 2, pred 1 (wrong)
            [0.5, 0.0, 1.5],  # label 2, pred 2
            [1.0, 0.2, 0.1],
        ]
    )  # label 1, pred 0 (wrong)
    labels = torch.tensor([0, 1, 2, 2, 1])
    groups = torch.tensor([0, 0, 1, 1, 1])
    rows = by_group(group_metrics(logits, labels, groups, ["g0", "g1"]))
    assert rows["g0"]["accuracy"] == pytest.approx(1.0)
    assert rows["g1"]["accuracy"] == pytest.approx(1 / 3)
    assert rows["all"]["accuracy"] == pytest.approx(3 / 5)
    # with every class present, the macro one-vs-rest AUROC equals sklearn's
    probs = torch.softmax(logits, 1).numpy()
    assert rows["all"]["auroc"] == pytest.approx(roc_auc_score(labels.numpy(), probs, multi_class="ovr"))
    # g0 holds classes 0 and 1, one sample each, ranked right by both columns: class 0 OvR = 1,
    # class 1 OvR = 1, class 2 absent and skipped -> macro 1
    assert rows["g0"]["auroc"] == pytest.approx(1.0)


def test_group_id_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="group_names"):
        group_metrics(torch.zeros(2), torch.tensor([0, 1]), torch.tensor([0, 2]), ["a", "b"])


def test_fairness_by_hand():
    rows = [{"group": "female", "accuracy": 0.9}, {"group": "male", "accuracy": 0.6}, {"group": "all", "accuracy": 0.8}]
    dense = [
        {"group": "female", "accuracy": 0.95},
        {"group": "male", "accuracy": 0.85},
        {"group": "all", "accuracy": 0.9},
    ]
    f = fairness(rows, dense)
    assert f["gap"] == pytest.approx(0.3)  # 0.9 - 0.6, `all` excluded
    assert f["drops"] == pytest.approx({"female": 0.05, "male": 0.25})
    assert f["worst_drop"] == pytest.approx(0.25)
    assert f["drop_std"] == pytest.approx(0.1)  # population std of [0.05, 0.25]: |0.2| / 2
    # overall drop 0.9 - 0.8 = 0.1; male's drop 0.25 exceeds it by 0.15, female's falls short
    assert f["max_disparity"] == pytest.approx(0.15)


def test_max_disparity_can_be_negative_and_is_nan_without_the_all_rows():
    rows = [{"group": "a", "accuracy": 0.8}, {"group": "b", "accuracy": 0.7}, {"group": "all", "accuracy": 0.5}]
    dense = [{"group": "a", "accuracy": 0.9}, {"group": "b", "accuracy": 0.8}, {"group": "all", "accuracy": 0.9}]
    # drops 0.1 and 0.1, overall drop 0.4: every group lost less than the whole
    assert fairness(rows, dense)["max_disparity"] == pytest.approx(-0.3)
    assert math.isnan(fairness(rows[:2], dense)["max_disparity"])


def test_true_and_false_positive_rates_by_hand():
    rows = by_group(group_metrics(torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(GROUPS), ["female", "male"]))
    # female: positives [pred 1] -> tpr 1; negatives preds [0, 1] -> fpr 1/2
    # male: positives preds [1, 0] -> tpr 1/2; negatives preds [0, 1] -> fpr 1/2
    assert (rows["female"]["tpr"], rows["female"]["fpr"]) == pytest.approx((1.0, 0.5))
    assert (rows["male"]["tpr"], rows["male"]["fpr"]) == pytest.approx((0.5, 0.5))
    assert (rows["all"]["tpr"], rows["all"]["fpr"]) == pytest.approx((2 / 3, 0.5))


def test_rates_are_nan_for_multiclass_and_for_an_absent_label():
    multi = group_metrics(torch.eye(3), torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]), ["a", "b"])
    assert all(math.isnan(r["tpr"]) and math.isnan(r["fpr"]) for r in multi)
    negatives = group_metrics(torch.tensor([1.0, -1.0]), torch.tensor([0, 0]), torch.tensor([0, 0]), ["a"])
    only_negatives = by_group(negatives)
    assert math.isnan(only_negatives["a"]["tpr"]) and only_negatives["a"]["fpr"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equalised_odds_difference_is_fairleans(seed):
    from fairlearn.metrics import equalized_odds_difference

    from pwprune.summary import equalised_odds_difference

    rng = np.random.default_rng(seed)
    n = 400
    y = rng.integers(0, 2, n)
    g = rng.integers(0, 3, n)
    # a model that is better on group 0 than on group 2, so the rates differ
    logits = (2 * y - 1) * rng.normal(1.0 - 0.4 * g, 1.0)
    rows = group_metrics(torch.tensor(logits), torch.tensor(y), torch.tensor(g), ["g0", "g1", "g2"])
    ours = equalised_odds_difference(rows)
    theirs = equalized_odds_difference(y, (logits > 0).astype(int), sensitive_features=g)
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours > 0.05  # the case is not trivially fair


def test_fairness_three_groups_population_std():
    rows = [{"group": k, "accuracy": a} for k, a in [("a", 0.8), ("b", 0.7), ("c", 0.3)]]
    dense = [{"group": k, "accuracy": 0.9} for k in "abc"]
    f = fairness(rows, dense)
    # drops [0.1, 0.2, 0.6], mean 0.3, squared deviations .04 + .01 + .09 = .14, / 3 groups
    assert f["gap"] == pytest.approx(0.5)
    assert f["worst_drop"] == pytest.approx(0.6)
    assert f["drop_std"] == pytest.approx(math.sqrt(0.14 / 3))


def test_count_macs_params_conv_by_hand():
    model = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    macs, params = count_macs_params(model, torch.zeros(1, 3, 8, 8))
    assert params == 4 * 3 * 3 * 3  # 108 weights
    assert macs == 4 * 3 * 3 * 3 * 8 * 8  # each weight used once per output pixel: 6912


def tiny_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))


def test_latency_restores_mode_and_is_positive():
    model = tiny_model().train()
    ms = latency_ms(model, torch.zeros(4, 3, 2, 2), repeats=3, warmup=1)
    assert ms > 0 and math.isfinite(ms)
    assert model.training


def test_predict_shapes_order_and_mode():
    torch.manual_seed(0)
    model = tiny_model().train()
    x = torch.randn(5, 3, 2, 2)
    loader = [
        (x[:3], torch.tensor([0, 1, 0]), torch.tensor([1, 1, 0]), torch.arange(3)),
        (x[3:], torch.tensor([1, 1]), torch.tensor([0, 1]), torch.arange(3, 5)),
    ]
    logits, labels, groups = predict(model, loader, "cpu")
    assert logits.shape == (5,)  # single logit squeezed
    assert torch.allclose(logits, model(x)[:, 0].detach())
    assert labels.tolist() == [0, 1, 0, 1, 1] and groups.tolist() == [1, 1, 0, 0, 1]
    assert model.training


def test_binary_auroc_matches_sklearn_with_ties():
    # the numpy rank statistic must equal sklearn's trapezoidal AUROC, ties included
    from pwprune.metrics import _binary_auroc

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        scores = rng.integers(0, 5, n).astype(float)  # few distinct values: many ties
        assert _binary_auroc(y == 1, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


# ---- groups = classes (CIFAR-10): each group's AUROC is its class's one-vs-rest AUROC (issue 19, item 7)


def test_groups_are_classes_auroc_is_sklearns_per_class_one_vs_rest():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=60)
    logits = torch.tensor(rng.normal(size=(60, 4)) + 1.5 * np.eye(4)[labels], dtype=torch.float32)
    logits[:5] = logits[5:10]  # ties across samples
    names = ["a", "b", "c", "d"]
    y = torch.tensor(labels)
    rows = by_group(group_metrics(logits, y, y, names, groups_are_classes=True))
    probs = torch.softmax(logits.double(), 1).numpy()
    expected = roc_auc_score(labels, probs, multi_class="ovr", average=None)  # the authors' evaluate.py:16-17
    assert [rows[n]["auroc"] for n in names] == pytest.approx(list(expected), abs=1e-9)
    assert rows["all"]["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    # per group (the default) a group holds one class: no AUROC, which is why the flag exists
    plain = by_group(group_metrics(logits, y, y, names))
    assert all(math.isnan(plain[n]["auroc"]) for n in names)
    assert [plain[n]["accuracy"] for n in names] == [rows[n]["accuracy"] for n in names]


def test_groups_are_classes_single_logit_and_absent_class():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0, -0.5])
    y = torch.tensor([1, 0, 0, 0, 1, 1])
    rows = by_group(group_metrics(logits, y, y, ["neg", "pos"], groups_are_classes=True))
    auc = roc_auc_score(y.numpy(), logits.numpy())
    assert rows["pos"]["auroc"] == pytest.approx(auc) and rows["neg"]["auroc"] == pytest.approx(auc)
    absent = by_group(
        group_metrics(
            torch.randn(4, 3),
            torch.tensor([0, 1, 0, 1]),
            torch.tensor([0, 1, 0, 1]),
            ["x", "y", "z"],
            groups_are_classes=True,
        )
    )
    assert math.isnan(absent["z"]["auroc"]) and absent["z"]["n"] == 0


def test_groups_are_classes_refuses_groups_that_are_not_the_labels():
    with pytest.raises(ValueError, match="groups_are_classes"):
        group_metrics(
            torch.randn(3, 2), torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), ["a", "b"], groups_are_classes=True
        )


def _outputs(diverged=False):
    """A checkpoint's outputs (pwprune.outputs): 4 test samples, a single logit, two groups."""
    return {
        "splits": {
            "test": {
                "logits": np.array([2.0, -1.0, 0.5, -3.0], dtype=np.float32),
                "y": np.array([1, 0, 0, 0]),
                "g": np.array([0, 0, 1, 1]),
            }
        },
        "group_names": ["a", "b"],
        "groups_are_classes": False,
        "stage": "finetuned",
        "achieved_reduction": 0.49,
        "counted_layers": "all",
        "environment": "env-x",
        "diverged": diverged,
        "macs": 123,
        "params": 45,
    }


def test_a_diverged_checkpoints_rows_are_degenerate():
    from pwprune.metrics import checkpoint_rows

    ok = checkpoint_rows(_outputs())
    assert [r["accuracy"] for r in ok] == [1.0, 0.5, 0.75] and not any(r["degenerate"] for r in ok)
    bad = checkpoint_rows(_outputs(diverged=True))
    assert all(r["degenerate"] and math.isnan(r["accuracy"]) and math.isnan(r["auroc"]) for r in bad)


def test_the_table_rows_of_a_checkpoint_are_its_outputs_rows_and_latency(tmp_path):
    """The aggregation's per-checkpoint rows: group_metrics of the outputs file, the checkpoint's
    facts on every row, and the latency measured for that checkpoint's folder (not another's)."""
    from pwprune.outputs import write_outputs
    from pwprune.stages.aggregate import checkpoint_metrics
    from pwprune.stages.jobs import METRIC_COLUMNS

    paths = {}
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        paths[name] = tmp_path / name / "outputs.npz"
        write_outputs(paths[name], _outputs())
    latency = {str(tmp_path / "x"): 0.25, str(tmp_path / "y"): 0.5}
    rows = checkpoint_metrics(paths["y"], latency)
    assert [r["group"] for r in rows] == ["a", "b", "all"] and set(METRIC_COLUMNS) <= set(rows[0])
    assert [r["accuracy"] for r in rows] == [1.0, 0.5, 0.75]
    assert {(r["latency_ms"], r["macs"], r["params"], r["environment"], r["stage"]) for r in rows} == {
        (0.5, 123, 45, "env-x", "finetuned")
    }
    with pytest.raises(ValueError, match="no latency measured"):
        checkpoint_metrics(paths["y"], {str(tmp_path / "x"): 0.25})
