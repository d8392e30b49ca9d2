"""The pipeline's prune, fine-tune and evaluate stages with the authors' choices of issue 19, items 5-7, on a
CIFAR-10 fixture in the real on-disk format: an option-A ResNet pruned with `layers: conv` records
the count its reduction is in (prune.json, the metrics' counted_layers column) beside every layer's
MACs, and since CIFAR-10's groups are its classes every group row has its class's one-vs-rest AUROC
(not NaN)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from data_fixtures import trust_fixture_md5s, write_cifar10
from pwprune.checkpoint import load_checkpoint, save_checkpoint
from pwprune.data import load_prepared, prepare
from pwprune.environment import environment_id
from pwprune.inference import count_macs_params, predict
from pwprune.models import arch_dict, build_from_arch, example_input
from pwprune.pruning.graph import counted_macs
from pwprune.stages.evaluate import evaluate_stage
from pwprune.stages.finetune import finetune_stage
from pwprune.stages.inputs import eval_loader
from pwprune.stages.prune import prune_stage

EVAL = {"batch_size": 256, "latency_batch": 1, "latency_repeats": 2}


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scope")
    mp = pytest.MonkeyPatch()
    try:
        write_cifar10(tmp / "raw", per_class_train=12, per_class_test=6)
        trust_fixture_md5s(mp, tmp / "raw")
        prepare({"kind": "cifar10", "image_size": 8, "val_fraction": 0.1}, tmp / "raw", tmp / "data", log=quiet)
    finally:
        mp.undo()
    prepared = load_prepared(tmp / "data")
    torch.manual_seed(0)
    arch = arch_dict("resnet20_a", 10, 3, 8)
    save_checkpoint(tmp / "dense.pt", build_from_arch(arch), arch, meta={"stage": "dense"})
    out = {
        k: tmp / "pruned" / f for k, f in (("model", "model.pt"), ("metrics", "metrics.csv"), ("info", "prune.json"))
    }
    prune = {"method": "magnitude", "target": 0.5, "tolerance": 0.02, "layers": "conv", "options": {}, "loss": "none"}
    prune_stage(tmp / "data", tmp / "dense.pt", None, prune, 0, "cpu", "test", out, log=quiet)
    evaluate_stage(out["model"], tmp / "data", EVAL, "cpu", out["metrics"], log=quiet)
    tuned = {
        k: tmp / "tuned" / f
        for k, f in (
            ("model", "model.pt"),
            ("metrics", "metrics.csv"),
            ("shares", "shares.csv"),
            ("history", "history.json"),
        )
    }
    loop = {"epochs": 1, "lr": 0.001, "batch_size": 64}
    finetune_stage(
        tmp / "data",
        out["model"],
        tmp / "dense.pt",
        None,
        {"loop": loop, "loss": "ce"},
        0,
        "cpu",
        "test",
        tuned,
        log=quiet,
    )
    evaluate_stage(tuned["model"], tmp / "data", EVAL, "cpu", tuned["metrics"], log=quiet)
    return tmp, prepared, arch, out, tuned


def test_prune_json_records_the_conv_count_beside_every_layers_macs(stages):
    tmp, _, arch, out, _ = stages
    info = json.loads(out["info"].read_text())
    model, _ = load_checkpoint(out["model"])
    dense, _ = load_checkpoint(tmp / "dense.pt")
    ex = example_input(arch)
    assert info["counted_layers"] == "conv" and info["within_tolerance"]
    assert (info["macs_before"], info["macs_after"]) == (
        counted_macs(dense, ex, "conv"),
        counted_macs(model, ex, "conv"),
    )
    assert info["achieved_reduction"] == pytest.approx(1 - info["macs_after"] / info["macs_before"])
    assert (info["total_macs_before"], info["total_macs_after"]) == (
        count_macs_params(dense, ex)[0],
        count_macs_params(model, ex)[0],
    )
    assert info["total_reduction"] == pytest.approx(1 - info["total_macs_after"] / info["total_macs_before"])
    assert info["total_macs_before"] > info["macs_before"]


@pytest.mark.parametrize("stage", ["pruned", "finetuned"])
def test_metrics_rows_name_the_count_and_keep_every_layers_macs(stages, stage):
    tmp, _, arch, out, tuned = stages
    rows = pd.read_csv((out if stage == "pruned" else tuned)["metrics"])
    info = json.loads(out["info"].read_text())
    assert (rows["counted_layers"] == "conv").all()
    assert (rows["achieved_reduction"] == info["achieved_reduction"]).all()
    assert (rows["macs"] == info["total_macs_after"]).all()  # the real total, not the counted MACs


@pytest.mark.parametrize("stage", ["pruned", "finetuned"])
def test_every_row_names_the_numeric_environment_of_its_checkpoint(stages, stage):
    _, _, _, out, tuned = stages
    paths = out if stage == "pruned" else tuned
    environment = load_checkpoint(paths["model"])[1]["meta"]["environment"]
    rows = pd.read_csv(paths["metrics"])
    assert environment["torch"] == torch.__version__
    assert (rows["environment"] == environment_id(environment)).all()
    assert environment_id(environment) != "unrecorded"


def test_groups_are_classes_rows_have_each_class_one_vs_rest_auroc(stages):
    tmp, prepared, arch, out, _ = stages
    assert prepared.meta["groups_are_classes"] is True
    rows = pd.read_csv(out["metrics"])
    rows = rows[rows["split"] == "test"].set_index("group")
    model, _ = load_checkpoint(out["model"])
    logits, labels, _ = predict(model, eval_loader(prepared, "test", 256, arch))
    probs = torch.softmax(logits.double(), 1).numpy()
    expected = roc_auc_score(labels.numpy(), probs, multi_class="ovr", average=None)
    names = prepared.meta["group_names"]
    assert [rows.loc[n, "auroc"] for n in names] == pytest.approx(list(expected), abs=1e-9)
    assert not any(math.isnan(rows.loc[n, "auroc"]) for n in names)
    assert np.allclose(rows.loc["all", "auroc"], roc_auc_score(labels.numpy(), probs, multi_class="ovr"))
