"""Facts about what the pipeline's jobs compute, each asserted on a real tiny Snakemake run.

`facts_run` builds only the few files these facts need (on tests/smoke.yaml with the per-method
PW settings of tests/pw_per_method.yaml): the dense model and its teacher outputs, the magnitude
pruned model fine-tuned with CE and with PW (the same pruned checkpoint under both losses), and
Taylor pruned and fine-tuned with PW. `augmented_run` is the whole grid of
tests/smoke_augment.yaml, where the teacher runs on the fly.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

from helpers import checkpoint_state as state
from helpers import completed_run, largest_change

pytestmark = pytest.mark.e2e

FACTS = ("--configfile", "tests/smoke.yaml", "tests/pw_per_method.yaml")
SEED = "results/smoke/seed0"
TARGETS = [
    f"{SEED}/finetuned/magnitude-none-ce/0.5/model.pt",
    f"{SEED}/finetuned/magnitude-none-pw/0.5/model.pt",
    f"{SEED}/finetuned/taylor-pw-pw/0.5/model.pt",
]
# PW settings of tests/pw_per_method.yaml per method, as the loss's repr writes them
PER_METHOD = {"magnitude": "min_weight=0.3, gamma=2.0", "taylor": "min_weight=0.8, gamma=0.5"}
CE_REPR = "reweight=False, correct_targets=False"
PW_REPR = "reweight=True, correct_targets=True"


@pytest.fixture(scope="module")
def facts_run(tmp_path_factory):
    return completed_run(tmp_path_factory, "facts", *TARGETS, *FACTS)


def test_teacher_file_is_the_dense_models_training_logits_in_index_order(facts_run):
    from pwprune.checkpoint import load_checkpoint
    from pwprune.data import SplitDataset, load_prepared

    saved = torch.load(facts_run / SEED / "dense" / "teacher.pt", weights_only=True)["logits"]
    dense, _ = load_checkpoint(facts_run / SEED / "dense" / "model.pt")
    prepared = load_prepared(facts_run / "data" / "prepared" / "smoke")
    train = SplitDataset(prepared.splits["train"], prepared.meta, augment=False)
    assert saved.shape == (len(train), prepared.meta["num_classes"])
    with torch.no_grad():  # one sample at a time, in index order: no batching, no loader
        expected = torch.cat([dense(train[i][0][None]) for i in range(len(train))])
    assert torch.allclose(saved, expected, atol=1e-5), (saved - expected).abs().max()


@pytest.mark.parametrize("run", ["magnitude-none-ce", "magnitude-none-pw", "taylor-pw-pw"])
def test_finetuning_changes_the_weights_not_the_architecture(facts_run, run):
    method, ploss, _ = run.split("-")
    pruned = state(facts_run / SEED / "pruned" / f"{method}-{ploss}" / "0.5" / "model.pt")
    tuned = state(facts_run / SEED / "finetuned" / run / "0.5" / "model.pt")
    assert largest_change(pruned, tuned) > 1e-4


def test_pw_and_ce_finetuning_of_one_pruned_model_end_in_different_weights(facts_run):
    ce = state(facts_run / SEED / "finetuned" / "magnitude-none-ce" / "0.5" / "model.pt")
    pw = state(facts_run / SEED / "finetuned" / "magnitude-none-pw" / "0.5" / "model.pt")
    assert largest_change(ce, pw) > 1e-4


def loss_line(log_path, phase):
    text = log_path.read_text()
    lines = re.findall(rf"{phase} loss (PerformanceWeightedLoss\(.*?\)), teacher (\w+)", text)
    assert len(lines) == 1, f"{log_path} names its loss {len(lines)} times:\n{text}"
    return lines[0]


def test_each_job_logs_the_loss_settings_it_used(facts_run):
    logs = facts_run / "logs" / "smoke" / "seed0"
    loss, teacher = loss_line(logs / "finetune" / "magnitude-none-ce" / "0.5.log", "fine-tuning")
    assert CE_REPR in loss and teacher == "none"
    for method, ploss in (("magnitude", "none"), ("taylor", "pw")):
        loss, teacher = loss_line(logs / "finetune" / f"{method}-{ploss}-pw" / "0.5.log", "fine-tuning")
        assert f"{PER_METHOD[method]}, {PW_REPR}" in loss and teacher == "CachedTeacher"
    loss, teacher = loss_line(logs / "prune" / "taylor-pw" / "0.5.log", "pruning")
    assert f"{PER_METHOD['taylor']}, {PW_REPR}" in loss and teacher == "CachedTeacher"
    assert "pruning loss" not in (logs / "prune" / "magnitude-none" / "0.5.log").read_text()


# ---------------------------------------------------------------- the augmented path


@pytest.fixture(scope="module")
def augmented_run(tmp_path_factory):
    return completed_run(
        tmp_path_factory, "augmented", "results/figures/all", "--configfile", "tests/smoke_augment.yaml"
    )


def test_augmented_run_uses_the_on_the_fly_teacher(augmented_run):
    logs = augmented_run / "logs" / "smoke_augment" / "seed0"
    taylor_pw = "min_weight=0.7, gamma=3.0, " + PW_REPR
    loss, teacher = loss_line(logs / "prune" / "taylor-pw" / "0.5.log", "pruning")
    assert taylor_pw in loss and teacher == "FrozenTeacher"
    loss, teacher = loss_line(logs / "finetune" / "taylor-pw-pw" / "0.5.log", "fine-tuning")
    assert taylor_pw in loss and teacher == "FrozenTeacher"
    loss, teacher = loss_line(logs / "finetune" / "taylor-ce-ce" / "0.5.log", "fine-tuning")
    assert CE_REPR in loss and teacher == "none"
    df = pd.read_csv(augmented_run / "results" / "metrics.csv")
    fin = df[(df["stage"] == "finetuned") & (df["group"] == "all")]
    assert sorted(fin["loss"]) == ["ce", "pw"] and fin["accuracy"].between(0, 1).all()
    assert (augmented_run / "results" / "figures" / "smoke_augment" / "group_performance.png").is_file()
