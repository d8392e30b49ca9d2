"""The CUDA code paths (issue 33), exercised as far as a CPU reaches them, and on a GPU by the tests
marked `cuda` (skipped without one; `python -m benchmarks.gpu_check` runs them).

Every branch of pwprune that exists for CUDA only, and the test that reaches it (CUDA_BRANCHES
below; test_every_cuda_branch_is_listed holds the list complete):
- Batches: the pinned, non-blocking copy (to_device): on a CPU with a stand-in pin_memory here;
  on CUDA test_batches_on_cuda_equal_the_cpus.
- crop_and_flip on CUDA: the gathers (crop_and_flip_gather), compared on CPU tensors with every
  draw in test_batches.py; on CUDA through test_batches_on_cuda_equal_the_cpus.
- fit's GradScaler: disabled, the same calls run in every CPU fit (counted here); enabled (fp16),
  on a CPU with autocast left out here (the fp32 weights bit for bit); on CUDA
  test_fp16_and_bf16_fit_on_cuda.
- the CUDA generator in the resume state, resolve_device('cuda:N'), prune_to_target's RNG fork,
  the GPU fields of the environment: with stand-ins for torch.cuda here and in
  test_environment.py; on CUDA test_environment.py and test_reproducibility.py.
- latency_ms on CUDA: its timing loop with a synchronize here; on CUDA test_latency_on_cuda.
- setup's TF32 and deterministic settings (test_reproducibility.py), the `gpu` resource and the
  deterministic-kernel check at validation (test_config.py): CPU tests of their logic.
"""

from __future__ import annotations

import ast
import collections
import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from helpers import REPO
from pwprune import names
from pwprune.data import Split
from pwprune.data.dataset import Batches, crop_and_flip, to_device
from pwprune.loss import make_loss
from pwprune.pruning.target import rng_fork_devices
from pwprune.train import Resume, _rng_state, _set_rng_state, fit, resolve_device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
META = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": 8}

# every function of pwprune with a CUDA-only branch -> the tests that reach it (module docstring)
CUDA_BRANCHES = {
    "pwprune/config.py::compute_threads": "test_reproducibility.py::test_numerics_come_from_params_not_scheduling",
    "pwprune/config.py::cuda_possible": "test_config.py::test_gpu_count_asks_for_a_gpu_wherever_jobs_compute_on_cuda",
    "pwprune/data/dataset.py::crop_and_flip": (
        "test_batches.py::test_crop_and_flip_is_the_per_sample_augmentation_for_every_draw; "
        "test_batches_on_cuda_equal_the_cpus"
    ),
    "pwprune/data/dataset.py::Batches.__init__": "test_batches_device_path_runs_on_a_cpu_through_the_same_code",
    "pwprune/environment.py::numeric_environment": "test_environment.py::test_the_cuda_fields_are_read_from_the_device",
    "pwprune/environment.py::environment_id": (
        "test_environment.py::test_tf32_shows_in_the_line_of_a_cuda_environment_that_allowed_it"
    ),
    "pwprune/inference.py::latency_ms": "test_the_timing_loop_synchronizes_where_cuda_needs_it; test_latency_on_cuda",
    "pwprune/pruning/target.py::rng_fork_devices": "test_prune_forks_the_rng_of_its_cuda_device",
    "pwprune/train.py::resolve_device": "test_resolve_device_checks_the_cuda_index",
    "pwprune/train.py::_rng_state": "test_the_cuda_generator_is_saved_and_restored_with_the_resume_state",
    "pwprune/train.py::_set_rng_state": "test_the_cuda_generator_is_saved_and_restored_with_the_resume_state",
    "pwprune/train.py::autocast_dtype": "test_resume.py::test_fp16_on_a_cpu_is_refused_naming_what_works",
}


def split(n=40, size=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 200, (n, 3, size, size)).astype(np.uint8)
    x[y == 1, 0] += 50  # learnable
    return Split("train", x, y.astype(np.int64), rng.integers(0, 2, n).astype(np.int64))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def train(device="cpu", precision="fp32", resume=None, epochs=2):
    torch.manual_seed(0)
    model = Net()
    loader = Batches(split(), META, 8, shuffle=True, seed=0, augment=True, device=device)
    history = fit(
        model,
        loader,
        epochs=epochs,
        lr=0.01,
        weight_decay=0.01,
        loss_fn=make_loss("ce"),
        device=device,
        precision=precision,
        resume=resume,
        log=lambda *a: None,
    )
    return model, history


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- the list is complete


def _cuda_branches(root: Path) -> set[str]:
    """`path::function` of every function of pwprune that compares something with "cuda" (== / != /
    startswith): where the code branches for CUDA."""
    found = set()

    def visit(node, where, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, where, [*scope, child.name])
                continue
            if scope and _compares_with_cuda(child):
                found.add(f"{where}::{'.'.join(scope)}")
            visit(child, where, scope)

    for path in sorted((root / "pwprune").rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), path.relative_to(root).as_posix(), [])
    return found


def _compares_with_cuda(node) -> bool:
    def is_cuda(n):
        return isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("cuda")

    if isinstance(node, ast.Compare):
        return any(is_cuda(n) for n in [node.left, *node.comparators])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith":
        return any(is_cuda(a) or (isinstance(a, ast.Tuple) and any(map(is_cuda, a.elts))) for a in node.args)
    return False


def test_every_cuda_branch_is_listed():
    """A new branch for CUDA only must come with a test that reaches it, listed in CUDA_BRANCHES."""
    found = _cuda_branches(REPO)
    missing = sorted(found - set(CUDA_BRANCHES))
    assert not missing, (
        f"functions with a CUDA-only branch that no test is listed for: {missing}; add a test that "
        "reaches the branch (on a CPU with stand-ins where it can, else marked cuda) and list it in "
        "tests/test_gpu_paths.py CUDA_BRANCHES"
    )
    assert not sorted(set(CUDA_BRANCHES) - found), "CUDA_BRANCHES lists functions without a CUDA branch"


def test_every_test_that_needs_cuda_is_marked_cuda():
    """The GPU check selects the CUDA tests with `-m cuda`: every test that skips without CUDA must
    carry the mark (a module-level skip alias such as CUDA here counts as such a skip)."""
    unmarked = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            decorators = [ast.unparse(d) for d in node.decorator_list]
            skips = any("cuda.is_available" in d or d == "CUDA" for d in decorators)
            if skips and "pytest.mark.cuda" not in decorators:
                unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"tests that skip without CUDA but are not marked cuda: {unmarked}"


# ---------------------------------------------------------------- deterministic kernels (config validation)

# the aten operations whose CUDA backward has no deterministic kernel, among pooling (torch's list
# for use_deterministic_algorithms); a 1x1 adaptive average pool is computed as a mean, not one of these
NONDETERMINISTIC_POOLS = {
    "_adaptive_avg_pool2d",
    "_adaptive_avg_pool3d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "avg_pool3d",
    "max_pool3d_with_indices",
    "fractional_max_pool2d",
    "fractional_max_pool3d",
}


@contextlib.contextmanager
def _no_init():
    """torch.nn.init as no-ops: a model built on the CPU without writing its weights (for the builders
    that compute on tensors and cannot run on the meta device: torchvision's RegNets)."""
    saved = {n: getattr(nn.init, n) for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")}
    for n in saved:
        setattr(nn.init, n, lambda t, *a, **k: t)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


def _pools_called(name):
    """The NONDETERMINISTIC_POOLS that model `name`'s training forward pass calls, run on the meta
    device (shapes only, no weights, no arithmetic)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from pwprune.models import build_model

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            op = func._schema.name.split("::")[-1]
            if op in NONDETERMINISTIC_POOLS:
                self.ops.add(op)
            return func(*args, **(kwargs or {}))

    try:
        with torch.device("meta"):
            model = build_model(name, 10, 3, 224)
    except NotImplementedError:
        with _no_init():
            model = build_model(name, 10, 3, 224)
        model = model.to("meta")
    with Record() as record:
        model.train()(torch.zeros(2, 3, 224, 224, device="meta"))
    return record.ops


@pytest.mark.slow
def test_the_registry_of_models_without_deterministic_cuda_kernels_is_what_their_forward_passes_call():
    """names.CUDA_NONDETERMINISTIC_MODELS (what validation refuses under deterministic mode on CUDA)
    equals the models among every offered one (names.MODEL_NAMES) whose training forward pass calls
    a pool without a deterministic CUDA backward: torchvision's VGGs and AlexNet, and nothing else
    (googlenet's 4x4 pool lives in its auxiliary heads, which pwprune builds without)."""
    calling = {}
    for name in names.MODEL_NAMES:
        ops = _pools_called(name)
        if ops:
            calling[name] = ops
    assert set(calling) == set(names.CUDA_NONDETERMINISTIC_MODELS)
    assert all(ops == {"_adaptive_avg_pool2d"} for ops in calling.values())


# ---------------------------------------------------------------- Batches' device path


def test_batches_device_path_runs_on_a_cpu_through_the_same_code(monkeypatch):
    """The CUDA path of Batches (to_device with pin: page-locked memory, non_blocking) on a CPU
    device, with a stand-in pin_memory (the real one needs a GPU driver): one pinning per batch,
    and the very batches of the plain path, augmented."""
    pinned = []

    def pin_memory(self):
        pinned.append(tuple(self.shape))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    s = split()
    plain = Batches(s, META, 16, shuffle=True, seed=1, augment=True, device=torch.device("cpu"))
    assert plain.pin is False  # a CPU device: nothing to pin
    via_pin = Batches(s, META, 16, shuffle=True, seed=1, augment=True, device="cpu")
    via_pin.pin = True  # what a CUDA device sets
    got, want = list(via_pin), list(plain)
    assert len(pinned) == len(got) == 3 and pinned[0] == (16, 3, 8, 8)
    for a, b in zip(got, want):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not [p for p in pinned[1:] if p[0] > 16]
    x = torch.arange(6, dtype=torch.uint8)
    assert to_device(x, "cpu", pin=False) is x  # a CPU device: no copy at all


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("augment", [False, True])
def test_batches_on_cuda_equal_the_cpus(augment):
    """The same draws (made on the CPU), the gathers of crop_and_flip on the GPU (the same uint8
    pixels, bit for bit), the same normalisation: the GPU's batches are the CPU's up to the
    float conversion's last bit (CUDA divides by a scalar as a multiplication by its reciprocal)."""
    s = split(size=16)
    meta = {**META, "input_size": 16}
    on_gpu = Batches(s, meta, 16, shuffle=True, seed=3, augment=augment, device="cuda")
    on_cpu = Batches(s, meta, 16, shuffle=True, seed=3, augment=augment)
    assert on_gpu.pin is True
    for (xg, yg, gg, ig), (xc, yc, gc, ic) in zip(on_gpu, on_cpu):
        assert xg.device.type == "cuda" and yg.device.type == "cpu"
        torch.testing.assert_close(xg.cpu(), xc, rtol=1e-6, atol=1e-6)
        assert torch.equal(ig, ic) and torch.equal(yg, yc) and torch.equal(gg, gc)
    x = torch.from_numpy(s.x[:8])
    tops, lefts, flips = (
        torch.tensor([0, 1, 2, 3, 4, 0, 4, 2]),
        torch.tensor([4, 3, 2, 1, 0, 0, 4, 2]),
        torch.arange(8) % 2 == 1,
    )
    gathered = crop_and_flip(x.cuda(), tops, lefts, flips, 2)  # on CUDA: the gathers
    assert torch.equal(gathered.cpu(), crop_and_flip(x, tops, lefts, flips, 2))


# ---------------------------------------------------------------- fit's GradScaler


class CountingScaler(torch.amp.GradScaler):
    """torch's GradScaler, counting the calls fit makes."""

    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = collections.Counter()
        CountingScaler.made.append(self)

    def scale(self, outputs):
        self.calls["scale"] += 1
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.calls["step"] += 1
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls["update"] += 1
        return super().update(new_scale)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_cpu_fit_steps_through_the_disabled_grad_scaler(monkeypatch, precision):
    """fit has one optimiser path: fp16 on CUDA scales the loss, every other precision runs the very
    same calls through a disabled GradScaler, which passes them straight through."""
    monkeypatch.setattr(torch.amp, "GradScaler", CountingScaler)
    CountingScaler.made.clear()
    _, history = train(precision=precision)
    (scaler,) = CountingScaler.made
    assert not scaler.is_enabled()
    steps = 2 * 5  # 2 epochs of 5 batches
    assert scaler.calls == {"scale": steps, "step": steps, "update": steps}
    assert all(np.isfinite(h["loss"]) for h in history)


def test_the_enabled_grad_scaler_gives_the_fp32_weights_and_is_resumed(monkeypatch, tmp_path):
    """fp16's path with the GradScaler enabled, reached on a CPU by leaving autocast out (fp16
    autocast needs CUDA): the loss is scaled by 2**16 and the gradients unscaled before each step,
    both exact in binary, so the weights are fp32's bit for bit; the resume state carries the
    scaler's state, and a resumed run continues from it."""
    import pwprune.train as train_module

    fp32, _ = train()
    monkeypatch.setattr(train_module, "autocast_dtype", lambda precision, device: None)
    monkeypatch.setattr(torch.amp, "GradScaler", CountingScaler)
    CountingScaler.made.clear()
    resume = Resume(tmp_path / "model.pt.resume", "fp16-on-cpu", every_seconds=0.0)
    scaled, _ = train(precision="fp16", resume=resume)
    assert CountingScaler.made[0].is_enabled()
    assert same(scaled.state_dict(), fp32.state_dict())
    saved = torch.load(resume.path, weights_only=True)
    assert saved["scaler"]["scale"] == 2.0**16 and saved["epoch"] == 2
    # two more epochs from the saved state restore the scaler first
    restored = []
    monkeypatch.setattr(CountingScaler, "load_state_dict", lambda self, state: restored.append(state))
    train(precision="fp16", resume=resume, epochs=3)
    assert restored and restored[0]["scale"] == 2.0**16


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_fp16_and_bf16_fit_on_cuda(tmp_path, precision):
    """Mixed precision on a GPU: fp16 with its GradScaler enabled (and in the resume state), bf16
    without; both train to finite weights near fp32's loss."""
    resume = Resume(tmp_path / "model.pt.resume", precision, every_seconds=0.0)
    model, history = train("cuda", precision, resume=resume, epochs=3)
    _, fp32 = train("cuda", "fp32", epochs=3)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    assert abs(history[-1]["loss"] - fp32[-1]["loss"]) < 0.1
    saved = torch.load(resume.path, weights_only=True)
    assert (saved["scaler"] is not None) == (precision == "fp16")


# ---------------------------------------------------------------- RNG, devices


def test_the_cuda_generator_is_saved_and_restored_with_the_resume_state(monkeypatch):
    state_of = {0: torch.tensor([7, 8], dtype=torch.uint8)}
    restored = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": state_of[torch.device(device).index])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.update(state=s, device=device))
    device = torch.device("cuda:0")
    state = _rng_state(device)
    assert torch.equal(state["cuda"], state_of[0])
    cpu_before = torch.get_rng_state()
    _set_rng_state(state, device)
    assert torch.equal(restored["state"], state_of[0]) and restored["device"] == device
    assert torch.equal(torch.get_rng_state(), cpu_before)
    assert "cuda" not in _rng_state(torch.device("cpu"))


def test_prune_forks_the_rng_of_its_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert rng_fork_devices("cpu") == [] and rng_fork_devices(torch.device("cpu")) == []
    assert rng_fork_devices("cuda:1") == [1]
    assert rng_fork_devices("cuda") == [3]  # a bare "cuda" is the current device


def test_resolve_device_checks_the_cuda_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"device 'cuda:2': only 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="expected 'cuda:N' with an integer N"):
        resolve_device("cuda:x")


# ---------------------------------------------------------------- latency


class ThreadProbe(nn.Module):
    """Records torch's thread count at every forward pass."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.lin(x)


def test_latency_is_measured_with_the_given_threads_and_restores_the_jobs():
    """The thread count is fixed by the `threads` argument (evaluate.latency_threads), not by what
    the job is allotted; the job's own count comes back afterwards."""
    from pwprune.inference import latency_ms

    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model = ThreadProbe().train()
        ms = latency_ms(model, torch.zeros(3, 4), repeats=3, warmup=1)
        assert ms > 0 and model.seen == [1] * 4  # the default: 1 thread
        assert torch.get_num_threads() == 2 and model.training
        model.seen.clear()
        latency_ms(model, torch.zeros(3, 4), repeats=2, warmup=0, threads=3)
        assert model.seen == [3, 3] and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match=r"threads must be an integer >= 1 \(evaluate.latency_threads\), got 0"):
            latency_ms(model, torch.zeros(3, 4), threads=0)
    finally:
        torch.set_num_threads(saved)


def test_the_timing_loop_synchronizes_where_cuda_needs_it():
    """latency_ms's loop on CUDA (timed_passes with torch.cuda.synchronize), with a stand-in
    synchronize: once after the warm-up, then inside each timed pass."""
    from pwprune.inference import timed_passes

    events = []
    model = ThreadProbe()
    model.register_forward_hook(lambda *a: events.append("forward"))
    times = timed_passes(model, torch.zeros(2, 4), repeats=3, warmup=2, synchronize=lambda: events.append("sync"))
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert events == ["forward", "forward", "sync"] + ["forward", "sync"] * 3


@pytest.mark.cuda
@CUDA
def test_latency_on_cuda(monkeypatch):
    """A model on CUDA is timed on its GPU, synchronizing, and stays there."""
    from pwprune.inference import latency_ms

    synced = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: (synced.append(device), real(device)))
    model = Net().cuda()
    ms = latency_ms(model, torch.zeros(4, 3, 8, 8), repeats=5, warmup=2)
    assert ms > 0 and len(synced) == 6
    assert next(model.parameters()).device.type == "cuda"


# ---------------------------------------------------------------- the local profile's GPU limit

GPU_JOBS = """
rule all:
    input: expand("out/{i}.txt", i=range(3))

rule gpu_job:
    output: "out/{i}.txt"
    resources: gpu=1
    shell: "date +%s.%N > {output}; sleep 1; date +%s.%N >> {output}"
"""


def _intervals(root):
    return sorted(tuple(map(float, (root / f"out/{i}.txt").read_text().split())) for i in range(3))


@pytest.mark.slow
def test_the_local_profile_runs_one_gpu_job_at_a_time(tmp_path):
    """profiles/local limits the `gpu` resource to 1 (`resources: {gpu: 1}`): three jobs that each
    ask for a GPU run one after the other under it, and side by side without it."""
    import subprocess
    import sys

    snakemake = str(Path(sys.executable).parent / "snakemake")
    for name, args in (("profile", ["--profile", str(REPO / "profiles" / "local")]), ("plain", ["--cores", "3"])):
        root = tmp_path / name
        root.mkdir()
        (root / "Snakefile").write_text(GPU_JOBS)
        proc = subprocess.run([snakemake, *args, "--cores", "3"], cwd=root, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        spans = _intervals(root)
        overlaps = any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
        assert overlaps is (name == "plain"), (name, spans)
