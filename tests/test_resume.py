"""Long jobs that survive a kill (issue 13, item 4): pwprune.train.fit keeps a resume state beside
its output; a rerun with the same settings continues from it and ends with the same weights, bit
for bit on the CPU, as an uninterrupted run. Mixed precision (item 3): bf16 on the CPU with the
loss in fp32."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import yaml

from helpers import checkpoint_state, copy_repo, snakemake
from pwprune.checkpoint import load_checkpoint
from pwprune.data import Split
from pwprune.data.dataset import Batches
from pwprune.loss import CachedTeacher, make_loss
from pwprune.train import Resume, fit

META = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": 8}


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 200, (n, 3, 8, 8)).astype(np.uint8)
    x[y == 1, 0] += 50  # learnable
    return Split("train", x, y.astype(np.int64), rng.integers(0, 2, n).astype(np.int64))


class Net(nn.Module):
    """Conv, BN (running statistics are state too), dropout (draws from the global RNG)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.drop(self.body(x).flatten(1)))


class Killed(Exception):
    pass


class KillAt:
    """A loss that stops the process (raises) at its n-th call, as a SIGKILL would."""

    calls = 0  # on the class: fit deep-copies the loss

    def __init__(self, inner, n):
        self.inner, self.n = inner, n
        KillAt.calls = 0

    @property
    def reduction(self):
        return self.inner.reduction

    @reduction.setter
    def reduction(self, value):  # fit's per-sample copy sets "none" on the loss it wraps
        self.inner.reduction = value

    def __call__(self, *args):
        KillAt.calls += 1
        if KillAt.calls == self.n:
            raise Killed
        return self.inner(*args)


def run(resume=None, loss=None, epochs=3, log=lambda *a: None, seed=0, **kw):
    torch.manual_seed(seed)
    model = Net()
    loader = Batches(data(), META, 16, shuffle=True, seed=seed, augment=True)
    history = fit(
        model,
        loader,
        epochs=epochs,
        lr=0.01,
        weight_decay=0.01,
        loss_fn=loss or make_loss("ce"),
        resume=resume,
        log=log,
        **kw,
    )
    return model.state_dict(), history


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def no_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("every_seconds,kill_at", [(0.0, 9), (3600.0, 10)])
def test_a_killed_fit_resumes_to_the_uninterrupted_weights_bit_for_bit(tmp_path, every_seconds, kill_at):
    """Killed in epoch 2 (6 batches an epoch): with every_seconds 0 the state was written after
    batch 2 of epoch 2 and the rerun continues mid-epoch; with an hour it was written at the end
    of epoch 1 and the rerun starts epoch 2."""
    want, want_history = run()
    resume = Resume(tmp_path / "model.pt.resume", "settings-1", every_seconds=every_seconds)
    with pytest.raises(Killed):
        run(resume, loss=KillAt(make_loss("ce"), kill_at))
    assert os.path.exists(resume.path)
    lines = []
    got, history = run(resume, log=lines.append)
    where = "epoch 2 after batch 2" if every_seconds == 0 else "epoch 2 from"
    assert any(f"resuming at {where}" in line for line in lines), lines
    assert not any(line.startswith("epoch 1/3") for line in lines)  # epoch 1 is not trained again
    assert same(got, want)
    assert no_seconds(history) == no_seconds(want_history)


def test_a_state_saved_for_other_settings_is_set_aside(tmp_path):
    want, _ = run()
    other = Resume(tmp_path / "r", "settings-1", every_seconds=0)
    with pytest.raises(Killed):
        run(other, loss=KillAt(make_loss("ce"), 9))
    lines = []
    got, _ = run(Resume(tmp_path / "r", "settings-2", every_seconds=0), log=lines.append)
    assert any("saved for other settings or inputs; starting at epoch 1" in line for line in lines)
    assert same(got, want)


def test_resume_needs_a_loader_that_saves_its_position(tmp_path):
    loader = torch.utils.data.DataLoader([(torch.zeros(3, 8, 8), 0, 0, 0)], batch_size=1)
    with pytest.raises(ValueError, match="resume needs a loader that can save its position"):
        fit(
            Net(),
            loader,
            epochs=1,
            lr=0.1,
            weight_decay=0.0,
            loss_fn=make_loss("ce"),
            resume=Resume(tmp_path / "r", "x"),
        )


def test_the_resume_file_loads_without_running_code(tmp_path):
    resume = Resume(tmp_path / "r", "s", every_seconds=0)
    with pytest.raises(Killed):
        run(resume, loss=KillAt(make_loss("ce"), 9), scheduler="multistep", milestones=[1, 2])
    state = torch.load(resume.path, weights_only=True)  # tensors and plain data only
    assert state["format"] == "pwprune-resume" and state["epoch"] == 2 and state["partial"]["batches"] == 2


# ---------------------------------------------------------------- mixed precision


class Spy:
    """A loss that records the dtype of the logits it is given."""

    dtypes = []

    def __init__(self, inner):
        self.inner = inner
        self.reweight, self.correct_targets = inner.reweight, inner.correct_targets
        Spy.dtypes = []

    reduction = KillAt.reduction

    def __call__(self, logits, teacher_logits, targets):
        Spy.dtypes.append((logits.dtype, teacher_logits.dtype))
        return self.inner(logits, teacher_logits, targets)


def test_bf16_on_cpu_trains_with_the_pw_loss_in_fp32_close_to_fp32():
    torch.manual_seed(0)
    teacher = CachedTeacher(torch.randn(96, 2))
    pw = make_loss("pw", gamma=1.0, min_weight=0.5)
    fp32, h32 = run(loss=Spy(pw), teacher=teacher, epochs=2)
    bf16, h16 = run(loss=Spy(pw), teacher=teacher, epochs=2, precision="bf16")
    assert set(Spy.dtypes) == {(torch.float32, torch.float32)}  # the PW loss never sees bf16
    assert all(v.dtype == fp32[k].dtype for k, v in bf16.items())  # weights stay fp32
    assert not same(bf16, fp32)  # the forward pass did run in bf16
    for a, b in zip(h32, h16):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05)


def test_fp16_on_a_cpu_is_refused_naming_what_works():
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device .* use 'bf16'"):
        run(precision="fp16")


# ---------------------------------------------------------------- the real workflow, killed


KILL = {
    "active": ["resume"],
    "experiments": {
        "resume": {
            "description": "one dense training job of several epochs, killed and resumed",
            "dataset": {"kind": "digits", "image_size": 16, "minority_share": 0.1, "seed": 0},
            "model": "small_cnn",
            "seeds": [0],
            "train": {"epochs": 8, "lr": 0.003, "batch_size": 32},
            "prune": {"methods": ["magnitude"], "targets": [0.5]},
            "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 128},
            "losses": ["ce"],
            "pw": {"min_weight": 0.5, "gamma": 1.0},
        }
    },
}
DENSE = "results/resume/seed0/dense/model.pt"
LOG = "logs/resume/seed0/train_dense.log"


def _start(root, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", DENSE, "--configfile=kill.yaml", "--cores", "1", *extra],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


@pytest.mark.e2e
def test_a_sigkilled_training_job_resumes_where_it_was_and_ends_with_the_same_weights(tmp_path):
    """The real Snakemake CLI: one dense training job is SIGKILLed (with Snakemake itself) after
    its second epoch; the rerun with --rerun-incomplete continues from the saved state, does not
    train epoch 1 again, ends with the weights of an uninterrupted run and removes the state."""
    whole = copy_repo(tmp_path / "whole")
    (whole / "kill.yaml").write_text(yaml.safe_dump(KILL))
    snakemake(whole, DENSE, "--configfile=kill.yaml", "--cores", "1")

    root = copy_repo(tmp_path / "killed")
    (root / "kill.yaml").write_text(yaml.safe_dump(KILL))
    proc = _start(root)
    log = root / LOG
    deadline = time.monotonic() + 600
    while not (log.exists() and "epoch 2/8 loss" in log.read_text()):
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_log = log.read_text()
    assert "epoch 8/8" not in killed_log, "the job finished before the kill: make the test's job longer"
    assert (root / f"{DENSE}.resume").exists()

    snakemake(root, DENSE, "--configfile=kill.yaml", "--unlock")  # the kill left Snakemake's lock
    snakemake(root, DENSE, "--configfile=kill.yaml", "--cores", "1", "--rerun-incomplete")
    rerun_log = log.read_text()
    assert "resuming at epoch" in rerun_log and "epoch 1/8" not in rerun_log
    assert same(checkpoint_state(root / DENSE), checkpoint_state(whole / DENSE))
    assert not (root / f"{DENSE}.resume").exists()  # a finished job removes its state
    assert load_checkpoint(root / DENSE)[1]["meta"]["environment"]["precision"] == "fp32"


# ---------------------------------------------------------------- bf16 through the real workflow

MIXED = {
    "active": ["mixed"],
    "experiments": {
        "mixed": {
            "description": "dense training, magnitude pruning and PW fine-tuning, in fp32 or bf16",
            "dataset": {"kind": "digits", "image_size": 12, "minority_share": 0.1, "seed": 0},
            "model": "small_cnn",
            "seeds": [0],
            "train": {"epochs": 2, "lr": 0.003, "batch_size": 64},
            "prune": {"methods": ["magnitude"], "targets": [0.5]},
            "finetune": {"epochs": 2, "lr": 0.001, "batch_size": 64},
            "losses": ["pw"],
            "pw": {"min_weight": 0.5, "gamma": 1.0},
        }
    },
}
TUNED = "results/mixed/seed0/finetuned/magnitude-none-pw/0.5"


def _mixed_run(root, precision):
    copy_repo(root)
    config = {**MIXED, "experiments": {"mixed": {**MIXED["experiments"]["mixed"], "precision": precision}}}
    (root / "mixed.yaml").write_text(yaml.safe_dump(config))
    snakemake(root, f"{TUNED}/metrics.csv", "--configfile=mixed.yaml", "--cores", "2")
    history = json.loads((root / TUNED / "history.json").read_text())
    meta = load_checkpoint(root / TUNED / "model.pt")[1]["meta"]
    return history, meta, pd.read_csv(root / TUNED / "metrics.csv")


@pytest.mark.e2e
def test_bf16_runs_end_to_end_on_cpu_with_the_pw_loss_close_to_fp32(tmp_path):
    """The real Snakemake CLI trains, prunes, fine-tunes with the PW loss and evaluates in bf16 and
    in fp32: the checkpoints record their precision, and bf16's PW loss per epoch and its test
    accuracy stay close to fp32's."""
    h32, meta32, m32 = _mixed_run(tmp_path / "fp32", "fp32")
    h16, meta16, m16 = _mixed_run(tmp_path / "bf16", "bf16")
    assert meta32["environment"]["precision"] == "fp32" and meta16["environment"]["precision"] == "bf16"
    for a, b in zip(h32, h16):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.1)
    assert [h["loss"] for h in h16] != [h["loss"] for h in h32]  # bf16 did change the arithmetic
    acc = {
        name: m.query("split == 'test' and group == 'all'")["accuracy"].item() for name, m in (("32", m32), ("16", m16))
    }
    assert abs(acc["16"] - acc["32"]) < 0.05, acc
    assert (m16["environment"].str.contains("bf16")).all()
