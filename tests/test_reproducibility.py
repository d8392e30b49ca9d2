"""Reproducible numbers (docs/reproducibility.md): what a compute job computes with comes from
params.yaml, never from Snakemake's --cores or the cluster's allocation; deterministic mode; the
numeric environment in every checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

import pwprune.config as pc
from helpers import checkpoint_state, copy_repo, snakemake
from pwprune.checkpoint import load_checkpoint
from pwprune.environment import numeric_environment, tf32_allowed
from pwprune.stages.inputs import NondeterministicOpError, deterministic_ops, set_deterministic, set_tf32, setup

# One dense training job computing with 2 configured threads on the CPU (pinned: `auto` would take
# a visible GPU). On this model and data 1 and 2 threads give different weights (largest change
# ~3e-4 after one epoch), so the job's thread count following --cores would show.
REPRO = {
    "active": ["repro"],
    "device": "cpu",
    "experiments": {
        "repro": {
            "description": "one dense training job at 2 configured threads",
            "dataset": {"kind": "digits", "image_size": 12, "minority_share": 0.1, "seed": 0},
            "model": "small_cnn",
            "seeds": [0],
            "train": {"epochs": 1, "lr": 0.003, "batch_size": 128},
            "prune": {"methods": ["magnitude"], "targets": [0.5]},
            "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 128},
            "losses": ["ce"],
            "pw": {"min_weight": 0.5, "gamma": 1.0},
            "resources": {"train": {"threads": 2}},
        }
    },
}
DENSE = "results/repro/seed0/dense/model.pt"
LOG = "logs/repro/seed0/train_dense.log"
NOTE = "computing with the configured 2 CPU threads on 1 allotted core(s)"


@pytest.fixture
def torch_numerics():
    """Restore torch's global numeric settings that a test changes."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        tf32_allowed(),
    )
    yield
    torch.set_num_threads(saved[0])
    torch.use_deterministic_algorithms(saved[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]
    if saved[4] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]
    set_tf32(saved[5])


def _dense_run(root: Path, cores: int, config=REPRO):
    copy_repo(root)
    (root / "repro.yaml").write_text(yaml.safe_dump(config))
    snakemake(root, DENSE, "--configfile=repro.yaml", "--cores", str(cores))
    return checkpoint_state(root / DENSE), load_checkpoint(root / DENSE)[1]["meta"], (root / LOG).read_text()


@pytest.mark.e2e
def test_weights_do_not_depend_on_cores(tmp_path):
    """The real Snakemake CLI runs one dense training job (2 configured threads) with --cores 1
    and with --cores 2: bit-identical weights; the --cores 1 job says it computed with 2."""
    one, meta_one, log_one = _dense_run(tmp_path / "cores1", 1)
    two, meta_two, log_two = _dense_run(tmp_path / "cores2", 2)
    assert one.keys() == two.keys()
    different = [k for k in one if not torch.equal(one[k], two[k])]
    assert not different, f"--cores 1 and --cores 2 gave different weights in {different}"
    assert NOTE in log_one
    assert NOTE not in log_two
    for meta in (meta_one, meta_two):
        env = meta["environment"]
        assert env["threads"] == 2 and env["deterministic"] is True and env["device_type"] == "cpu"
        assert env["torch"] == torch.__version__


@pytest.mark.e2e
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the test computes on one")
def test_weights_do_not_depend_on_cores_on_cuda(tmp_path):
    """The same dense training job with `device: cuda` under --cores 1 and --cores 2: on a GPU the
    CPU thread count is not a param (the job takes its allotment), and the weights are still
    bit-identical (deterministic mode, TF32 off)."""
    config = {**REPRO, "device": "cuda"}
    one, meta_one, _ = _dense_run(tmp_path / "cores1", 1, config)
    two, meta_two, _ = _dense_run(tmp_path / "cores2", 2, config)
    different = [k for k in one if not torch.equal(one[k], two[k])]
    assert not different, f"--cores 1 and --cores 2 gave different weights on CUDA in {different}"
    for meta in (meta_one, meta_two):
        env = meta["environment"]
        assert env["device_type"] == "cuda" and env["deterministic"] is True and env["tf32"] is False
    assert {meta_one["environment"]["threads"], meta_two["environment"]["threads"]} == {1, 2}  # the allotments


def test_numerics_come_from_params_not_scheduling():
    exp = {"resources": {"train": {"threads": 4, "mem_mb": 100}, "finetune": {"threads": 3}}}
    training = {"precision": "fp32", "channels_last": False}  # the training stages' arithmetic
    assert pc.numerics(exp, "train", "cpu") == {"threads": 4, "deterministic": True, **training}
    assert pc.numerics(exp, "prune", "cpu") == {"threads": 1, "deterministic": True}  # unset: 1
    assert pc.numerics(exp, "evaluate", "auto")["threads"] == 3  # evaluation falls back to fine-tuning's
    # on CUDA the CPU thread count does not enter the arithmetic: not a param, so no rerun
    assert pc.numerics(exp, "train", "cuda") == {"threads": None, "deterministic": True, **training}
    assert pc.numerics(exp, "train", "cuda:1")["threads"] is None
    assert pc.numerics({**exp, "deterministic": False}, "train", "cpu")["deterministic"] is False


def test_setup_computes_with_the_configured_threads_whatever_is_allotted(torch_numerics):
    notes = []
    setup({"threads": 2, "deterministic": True}, 1, "cpu", 0, log=notes.append)
    assert torch.get_num_threads() == 2
    assert len(notes) == 1 and NOTE in notes[0]
    notes.clear()
    setup({"threads": 1, "deterministic": True}, 2, "cpu", 0, log=notes.append)
    assert torch.get_num_threads() == 1 and not notes  # more cores than needed: nothing to say
    setup({"threads": None, "deterministic": True}, 2, "cpu", 0, log=notes.append)
    assert torch.get_num_threads() == 2 and not notes  # CUDA: the allotment


def test_setup_applies_deterministic_mode_and_the_environment_records_it(torch_numerics):
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    setup({"threads": 1, "deterministic": True}, 1, "cpu", 0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert numeric_environment("cpu")["deterministic"] is True
    setup({"threads": 1, "deterministic": False}, 1, "cpu", 0)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic
    env = numeric_environment("cpu")
    assert env["deterministic"] is False and env["threads"] == 1


def test_setup_turns_tf32_off_and_the_environment_records_it(torch_numerics):
    """Every compute job computes fp32 as IEEE fp32 on CUDA too: setup turns TF32 off in CUDA
    matmuls and cuDNN convolutions (torch's default allows it in convolutions). The flags are
    torch's process state, readable (and set) without a GPU."""
    set_tf32(True)
    assert tf32_allowed() and numeric_environment("cpu")["tf32"] is True
    setup({"threads": 1, "deterministic": True}, 1, "cpu", 0)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.conv.fp32_precision != "tf32"  # the per-operator API agrees
    assert tf32_allowed() is False
    env = numeric_environment("cpu", "fp32")
    assert env["tf32"] is False


def test_an_op_without_deterministic_kernel_stops_the_job_naming_op_and_option(torch_numerics):
    """put_ without accumulate has no deterministic CPU kernel (torch raises for it in
    deterministic mode); the job's error names it and the option that allows it."""
    option = "experiments.repro.deterministic"
    set_deterministic(True)
    with pytest.raises(NondeterministicOpError) as err:
        with deterministic_ops(option):
            torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    message = str(err.value)
    assert message.startswith("put_ has no deterministic kernel")
    assert f"`{option}: false`" in message
    # other errors pass through untouched
    with pytest.raises(RuntimeError, match="shape") as other:
        with deterministic_ops(option):
            torch.zeros(2, 3) @ torch.zeros(2, 3)
    assert not isinstance(other.value, NondeterministicOpError)
    set_deterministic(False)
    with deterministic_ops(option):
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))


def test_augmentation_draws_from_its_own_seeded_generator():
    """Augmented batches depend on the loader's seed only, not on how much of torch's global RNG
    other code consumed."""
    from types import SimpleNamespace

    import numpy as np

    from pwprune.data import Split
    from pwprune.stages.inputs import train_loader

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 1, 8, 8), dtype=np.uint8)
    split = Split("train", x, np.zeros(16, dtype=np.int64), np.zeros(16, dtype=np.int64))
    meta = {"mean": [0.5], "std": [0.25], "input_size": 8}
    prepared = SimpleNamespace(splits={"train": split}, meta=meta)

    def first_batch(consume):
        torch.manual_seed(consume)
        torch.rand(consume)  # other code drawing from the global RNG
        return next(iter(train_loader(prepared, 16, seed=3, augment=True)))[0]

    assert torch.equal(first_batch(1), first_batch(1000))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the CUDA settings need one")
def test_cuda_deterministic_mode_gives_identical_gradients(torch_numerics):
    device = setup({"threads": None, "deterministic": True}, 1, "cuda", 0)
    assert device.type == "cuda"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"

    def grads():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4)
        )
        model = model.to(device)
        x = torch.randn(32, 3, 16, 16, device=device)
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(grads(), grads()))
    env = numeric_environment(device)
    assert env["gpu"] == torch.cuda.get_device_name(device) and env["cuda"] == torch.version.cuda
    assert env["cudnn"] == str(torch.backends.cudnn.version())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: TF32 needs one")
def test_cuda_fp32_convolution_is_ieee_after_setup(torch_numerics):
    """After a job's setup a CUDA convolution and matmul compute in IEEE fp32, not TF32: their error
    against float64 stays at fp32's level (~5e-7 of the largest output on a CPU), far below TF32's
    (inputs rounded to a 10-bit mantissa: 3e-4 on these tensors, simulated)."""
    device = setup({"threads": None, "deterministic": True}, 1, "cuda", 0)
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 64, 32, 32, generator=gen), torch.randn(64, 64, 3, 3, generator=gen)
    a, b = torch.randn(512, 512, generator=gen), torch.randn(512, 512, generator=gen)
    conv = torch.nn.functional.conv2d(x.to(device), w.to(device), padding=1).cpu().double()
    conv_ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    mm = (a.to(device) @ b.to(device)).cpu().double()
    mm_ref = a.double() @ b.double()
    assert ((conv - conv_ref).abs().max() / conv_ref.abs().max()).item() < 5e-5
    assert ((mm - mm_ref).abs().max() / mm_ref.abs().max()).item() < 5e-5
    assert numeric_environment(device)["tf32"] is False
