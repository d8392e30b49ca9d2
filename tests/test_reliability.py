"""Reliability and safety of the pipeline (issue 8), through the real Snakemake CLI on tiny slices:
bad configuration stops Snakemake before any job; missing or corrupt inputs give one error naming
the file and the fix and write nothing downstream; a killed job leaves nothing a later run accepts
and loses no finished work; CPU runs are deterministic; divergence never saves a NaN model as a
success; checkpoints never run code on load; a second invocation on a busy directory is refused.

Most tests share one completed tiny slice (`tiny_done`: one dense model, one magnitude-pruned
model, one fine-tuned model, the aggregate table) and work on byte-exact clones of it.
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from helpers import BIN, REPO, copy_repo, snakemake

# ---------------------------------------------------------------- the tiny slice

# `tiny` runs the slice the tests ask for in seconds; `slow` (defined, not active) trains its dense
# model long enough to be killed mid-training. Neither changes the other's jobs.
TINY = {
    "dataset": {"kind": "digits", "image_size": 8, "minority_share": 0.1, "seed": 0},
    "model": "small_cnn",
    "seeds": [0],
    "train": {"epochs": 1, "lr": 0.003, "batch_size": 128},
    "prune": {"methods": ["magnitude"], "targets": [0.5], "batch_size": 128},
    "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 128},
    "losses": ["ce"],
    "pw": {"min_weight": 0.5, "gamma": 1.0},
    "inference": {"batch_size": 512},
    "evaluate": {"latency_batch": 1, "latency_repeats": 2},
}
# ~0.5 s an epoch: long enough that a second Snakemake invocation (several seconds to start on a
# busy machine) meets the first one still training
SLOW_EPOCHS = 60
SLOW = {**copy.deepcopy(TINY), "train": {"epochs": SLOW_EPOCHS, "lr": 0.003, "batch_size": 8}}
CONFIG = {"active": ["tiny"], "device": "cpu", "experiments": {"tiny": TINY, "slow": SLOW}}

DENSE = "results/tiny/seed0/dense"
PRUNED = "results/tiny/seed0/pruned/magnitude-none/0.5"
TUNED = "results/tiny/seed0/finetuned/magnitude-none-ce/0.5"
SLOW_DENSE = "results/slow/seed0/dense"
SLOW_LOG = "logs/slow/seed0/train_dense.log"
DENSE_OUTPUTS = ("model.pt", "history.json", "teacher.pt", "outputs.npz")  # the training job's


def write_config(root: Path, config: dict, name="tiny.yaml") -> str:
    (root / name).write_text(yaml.safe_dump(config, sort_keys=False))
    return name


def files(root: Path, *, skip=(".snakemake",)) -> dict[str, str]:
    """relative path -> sha256 of every file under root (except Snakemake's own bookkeeping)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and rel.parts[0] not in skip:
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def produced(root: Path) -> dict[str, str]:
    """What runs produce: results, logs, prepared data, benchmarks."""
    return {
        k: v for k, v in files(root).items() if k.startswith(("results/", "logs/", "data/prepared/", "benchmarks/out/"))
    }


def clone(src: Path, dest: Path) -> Path:
    """Byte- and mtime-exact copy of a run directory (Snakemake metadata included)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def out_of(proc) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_done(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("tiny") / "repo")
    cfg = write_config(root, CONFIG)
    snakemake(root, "results/metrics.csv", "--cores", "1", "--configfile", cfg)
    return root


@pytest.fixture
def done(tiny_done, tmp_path):
    """A private clone of the completed tiny slice."""
    return clone(tiny_done, tmp_path / "run")


# ---------------------------------------------------------------- 1. bad configuration


def _mut(path, value):
    """Set experiments.tiny.<path> (dotted) to value."""

    def apply(cfg):
        node = cfg["experiments"]["tiny"]
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value

    return apply


def _top(key, value):
    def apply(cfg):
        cfg[key] = value

    return apply


# (id, mutation, expected fragments of the message: key path, and what would be valid)
BAD_CONFIGS = [
    (
        "unknown-top-key",
        _top("actve", ["tiny"]),
        ["(top level): unknown key(s) 'actve'", "valid keys: active, device, experiments"],
    ),
    (
        "unknown-experiment-key",
        _mut("trian", {"epochs": 1}),
        ["experiments.tiny: unknown key(s) 'trian'", "valid keys:", "train"],
    ),
    ("unknown-loop-key", _mut("finetune.epoch", 3), ["experiments.tiny.finetune: unknown key(s) 'epoch'", "epochs"]),
    (
        "wrong-type-epochs",
        _mut("train.epochs", "two"),
        ["experiments.tiny.train.epochs: 'two' has the wrong type; expected integer"],
    ),
    ("wrong-type-seeds", _mut("seeds", 0), ["experiments.tiny.seeds: 0 has the wrong type; expected array"]),
    (
        "target-above-1",
        _mut("prune.targets", [0.5, 1.5]),
        ["experiments.tiny.prune.targets.1: 1.5 is out of range; must be < 1"],
    ),
    ("target-1", _mut("prune.targets", [1.0]), ["experiments.tiny.prune.targets.0: 1.0 is out of range; must be < 1"]),
    ("target-0", _mut("prune.targets", [0]), ["experiments.tiny.prune.targets.0: 0 is out of range; must be > 0"]),
    (
        "ablation-target-negative",
        _mut("ablation", {"methods": ["magnitude"], "targets": [-0.5]}),
        ["experiments.tiny.ablation.targets.0: -0.5 is out of range; must be > 0"],
    ),
    (
        "min-weight-above-1",
        _mut("pw.min_weight", 1.5),
        ["experiments.tiny.pw.min_weight: 1.5 is out of range; must be <= 1"],
    ),
    (
        "min-weight-negative",
        _mut("pw.min_weight", -0.1),
        ["experiments.tiny.pw.min_weight: -0.1 is out of range; must be >= 0"],
    ),
    (
        "per-method-min-weight",
        _mut("pw.methods", {"taylor": {"min_weight": 2}}),
        ["experiments.tiny.pw.methods.taylor.min_weight: 2 is out of range; must be <= 1"],
    ),
    ("gamma-negative", _mut("pw.gamma", -1), ["experiments.tiny.pw.gamma: -1 is out of range; must be >= 0"]),
    ("empty-seeds", _mut("seeds", []), ["experiments.tiny.seeds: must list at least 1 item(s)"]),
    (
        "unknown-dataset-kind",
        _mut("dataset", {"kind": "mnist"}),
        ["experiments.tiny.dataset.kind: 'mnist' is not valid", "digits, cifar10, celeba, fitzpatrick17k"],
    ),
    (
        "unknown-model",
        _mut("model", "resnet999"),
        ["experiments.tiny.model: 'resnet999' is not valid", "small_cnn", "resnet56", "efficientnet_v2_m"],
    ),
    (
        "unknown-method",
        _mut("prune.methods", ["magnitude", "l1norm"]),
        ["experiments.tiny.prune.methods.1: 'l1norm' is not valid", "random, magnitude, taylor, autobot"],
    ),
    (
        "unknown-loss",
        _mut("losses", ["ce", "focal"]),
        ["experiments.tiny.losses.1: 'focal' is not valid", "valid values: ce, pw"],
    ),
    (
        "unknown-on-divergence",
        _mut("finetune.on_divergence", "ignore"),
        ["experiments.tiny.finetune.on_divergence: 'ignore' is not valid", "raise, degenerate"],
    ),
    ("bad-device", _top("device", "gpu"), ["device: 'gpu' does not match", "auto|cpu|cuda"]),
    (
        "evaluate-batch-size-moved",
        _mut("evaluate", {"batch_size": 512, "latency_repeats": 2}),
        ["experiments.tiny.evaluate.batch_size: moved to experiments.tiny.inference.batch_size", "latency_repeats"],
    ),
    ("undefined-active", _top("active", ["tiny", "tyni"]), ["active: experiment 'tyni' is not defined", "tiny"]),
    (
        "unknown-dataset-specific-key",
        _mut("dataset", {"kind": "digits", "minorty_share": 0.1}),
        [
            "experiments.tiny.dataset: unknown dataset key(s) 'minorty_share' for kind 'digits'",
            "valid keys:",
            "minority_share",
        ],
    ),
    (
        "unknown-celeba-attribute",
        _mut("dataset", {"kind": "celeba", "target": "Blond_Hiar", "group": "Male"}),
        ["experiments.tiny.dataset:", "target attribute 'Blond_Hiar' is unknown", "valid attributes:", "Blond_Hair"],
    ),
]

# A duplicated experiment name cannot be written as a dict; it is raw YAML.
DUPLICATED = textwrap.dedent("""\
    active: [tiny]
    experiments:
      tiny: {experiments_placeholder}
      tiny: {experiments_placeholder}
    """)


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory):
    return copy_repo(tmp_path_factory.mktemp("cfg") / "repo")


def _assert_refused(root: Path, cfg_name: str, expected: list[str]):
    before = produced(root)
    for extra in (["-n"], []):
        proc = snakemake(
            root, f"{DENSE}/model.pt", "--cores", "1", *extra, "--configfile", cfg_name, check=False, timeout=120
        )
        out = out_of(proc)
        assert proc.returncode != 0, out
        for fragment in expected:
            assert fragment in out, f"{fragment!r} not in:\n{out}"
        assert cfg_name in out, out  # says which file it checked
        # refused before any job: nothing scheduled, nothing written
        assert "Job stats" not in out and "rule train_dense" not in out, out
        assert produced(root) == before == {}, produced(root)


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_with_the_key_and_the_fix(case):
    """Every bad configuration, checked in-process as the Snakefile checks it at start-up
    (workflow/rules/common.smk: params.yaml updated by the --configfile as Snakemake merges them,
    then validate, check_datasets, check_raw_data, check_pretrained): ConfigError with every
    expected fragment. A few of them also go through the real CLI below."""
    from snakemake.utils import update_config

    import pwprune.config as pc

    name, mutate, expected = case
    cfg = copy.deepcopy(CONFIG)
    mutate(cfg)
    config = pc.load_yaml_strict(REPO / "params.yaml")
    update_config(config, copy.deepcopy(cfg))
    with pytest.raises(pc.ConfigError) as err:
        pc.validate(config, REPO / "workflow" / "schemas" / "params.schema.yaml")
        pc.check_datasets(config)
        pc.check_raw_data(config)
        pc.check_pretrained(config)
    for fragment in expected:
        assert fragment in str(err.value), f"{fragment!r} not in:\n{err.value}"


# through the real Snakemake CLI: a schema error, a cross-key one, a dataset one
CLI_BAD_CONFIGS = [c for c in BAD_CONFIGS if c[0] in ("unknown-top-key", "target-above-1", "unknown-celeba-attribute")]


@pytest.mark.e2e
@pytest.mark.parametrize("case", CLI_BAD_CONFIGS, ids=[c[0] for c in CLI_BAD_CONFIGS])
def test_bad_config_stops_before_any_job(clean_copy, case):
    name, mutate, expected = case
    cfg = copy.deepcopy(CONFIG)
    mutate(cfg)
    _assert_refused(clean_copy, write_config(clean_copy, cfg, f"bad-{name}.yaml"), expected)


@pytest.mark.e2e
def test_duplicated_experiment_name_stops_before_any_job(clean_copy):
    body = yaml.safe_dump(TINY, default_flow_style=True, width=10_000).strip()
    (clean_copy / "dup.yaml").write_text(DUPLICATED.replace("{experiments_placeholder}", body))
    _assert_refused(
        clean_copy,
        "dup.yaml",
        [
            "duplicated key 'tiny' at line 4 (first at line 3)",
            "dup.yaml",
            "each key (e.g. an experiment name) may appear once",
        ],
    )


# ---------------------------------------------------------------- 2. missing or corrupt inputs


@pytest.mark.e2e
def test_missing_raw_data_names_the_path_and_how_to_get_it(clean_copy):
    cfg = copy.deepcopy(CONFIG)
    cfg["active"] = ["cif"]
    cfg["experiments"]["cif"] = {**copy.deepcopy(TINY), "dataset": {"kind": "cifar10", "variant": "standard"}}
    name = write_config(clean_copy, cfg, "cifar.yaml")
    for dry in (["-n"], []):
        proc = snakemake(
            clean_copy,
            "results/cif/seed0/dense/model.pt",
            "--cores",
            "1",
            *dry,
            "--configfile",
            name,
            check=False,
            timeout=300,
        )
        out = out_of(proc)
        assert proc.returncode != 0, out
        # one clear message: the expected path, and how to get the data
        assert "CIFAR-10 is missing or incomplete: expected data/raw/cifar10/cifar-10-batches-py/" in out, out
        assert "dvc pull" in out and "torchvision.datasets.CIFAR10('data/raw/cifar10', download=True)" in out, out
        # checked at start-up, dry runs included: no job at all, so nothing downstream exists
        assert "rule prepare_data" not in out and "rule train_dense" not in out, out
    assert not (clean_copy / "data/prepared/cif").exists()
    assert not (clean_copy / "results/cif").exists()
    assert not (clean_copy / "logs").exists() and not (clean_copy / "benchmarks/out").exists()


class _RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _truncate(path: Path, marker: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bare_state_dict(path: Path, marker: Path):
    # what `torch.save(model.state_dict(), ...)` from another project gives
    torch.save({"conv.weight": torch.zeros(3, 3)}, path)


def _hostile(path: Path, marker: Path):
    torch.save({"format": "pwprune-checkpoint", "version": 1, "payload": _RunsCode(marker)}, path)


def _random_bytes(path: Path, marker: Path):
    # seeded, and beginning with 0x93 (STACK_GLOBAL): random bytes that start like a pickle that
    # imports code are still garbage, not a hostile file (unseeded, ~3 % of runs began so)
    path.write_bytes(bytes([0x93]) + random.Random(0).randbytes(4095))


BAD_CHECKPOINTS = {
    "truncated": (_truncate, "corrupt or truncated checkpoint"),
    "random-bytes": (_random_bytes, "corrupt or truncated checkpoint"),
    "foreign-state-dict": (_bare_state_dict, "not a pwprune checkpoint (it holds a bare state dict)"),
    "runs-code-on-load": (_hostile, "refusing to load"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_dense_checkpoint_refused_by_prune(done, kind):
    spoil, expected = BAD_CHECKPOINTS[kind]
    marker = done / "MARKER_code_ran"
    dense = done / DENSE / "model.pt"
    spoil(dense, marker)
    before = produced(done)
    proc = snakemake(
        done,
        f"{PRUNED}/model.pt",
        "--cores",
        "1",
        "--forcerun",
        "prune",
        "--configfile",
        "tiny.yaml",
        check=False,
        timeout=300,
    )
    out = out_of(proc)
    assert proc.returncode != 0, out
    assert f"{DENSE}/model.pt: {expected}" in out, out
    assert "delete it and rerun the step that writes it" in out, out  # the fix
    assert "weights_only=" + "False" not in out, out  # never advise switching the safety off
    assert not marker.exists(), "loading the checkpoint ran code from it"
    # no downstream output: the forced job's outputs are gone, nothing else changed
    for name in ("model.pt", "prune.json", "outputs.npz"):
        assert not (done / PRUNED / name).exists()
    after = produced(done)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= {f"{PRUNED}/{n}" for n in ("model.pt", "prune.json", "outputs.npz")} | {
        "logs/tiny/seed0/prune/magnitude-none/0.5.log",
        "benchmarks/out/tiny/seed0/prune/magnitude-none/0.5.tsv",
    }, changed


@pytest.mark.e2e
def test_unreadable_outputs_refused_by_aggregate(done):
    bad = done / TUNED / "outputs.npz"
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated copy, as an interrupted transfer leaves
    proc = snakemake(
        done,
        "results/metrics.csv",
        "--cores",
        "1",
        "--forcerun",
        "aggregate",
        "--configfile",
        "tiny.yaml",
        check=False,
        timeout=300,
    )
    out = out_of(proc)
    assert proc.returncode != 0, out
    assert f"{TUNED}/outputs.npz: cannot read model outputs" in out, out
    assert "delete it and rerun the job that produces it" in out, out
    assert not (done / "results/metrics.csv").exists()
    assert not (done / "results/loss_shares.csv").exists()


# ---------------------------------------------------------------- 3. interruption


def _start(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(
        [str(BIN / "snakemake"), *args],
        cwd=root,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_epoch(root: Path, proc: subprocess.Popen, deadline_s=600):
    """Poll the slow job's log until it has finished an epoch (so it is mid-training)."""
    log = root / SLOW_LOG
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if log.exists() and re.search(rf"epoch \d+/{SLOW_EPOCHS}", log.read_text()):
            return
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended before training started:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail("no training epoch logged in time")


def _finished_and_loadable(root: Path, dense_dir: str):
    from pwprune.checkpoint import load_checkpoint

    model, info = load_checkpoint(root / dense_dir / "model.pt")
    assert info["meta"]["stage"] == "dense"
    for name in DENSE_OUTPUTS:
        assert (root / dense_dir / name).stat().st_size > 0


@pytest.mark.e2e
def test_sigkill_mid_training_leaves_nothing_accepted_and_rerun_completes(done):
    kept = produced(done)  # the finished tiny slice
    proc = _start(done, f"{SLOW_DENSE}/model.pt", "--cores", "1", "--configfile", "tiny.yaml")
    _wait_for_epoch(done, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job: a node lost mid-training
    proc.wait(timeout=60)
    proc.stdout.close()

    # nothing that a later run could take for finished
    for name in DENSE_OUTPUTS:
        assert not (done / SLOW_DENSE / name).exists(), name
    # a SIGKILL can land inside an atomic write (the resume state is saved every epoch): its
    # hidden temp file may stay, but never under a name a later run would take for an output
    stray = list(done.glob(f"{SLOW_DENSE}/*.tmp"))
    assert all(p.name.startswith(".") and ".tmp" in p.name for p in stray), stray
    prepared = {k: v for k, v in produced(done).items() if k.startswith("data/prepared/slow/")}
    assert prepared  # finished before the kill, and must survive it
    kept.update(prepared)
    incomplete = list((done / ".snakemake/incomplete").iterdir())
    assert incomplete, "Snakemake did not mark the killed job's outputs incomplete"

    # the stale lock refuses a plain rerun, with the way out in the message
    again = snakemake(
        done, f"{SLOW_DENSE}/model.pt", "--cores", "1", "--configfile", "tiny.yaml", check=False, timeout=120
    )
    assert again.returncode != 0
    assert "Directory cannot be locked" in out_of(again) and "--unlock" in out_of(again), out_of(again)

    # the documented recovery (docs/getting-started.md): --unlock, then --rerun-incomplete
    snakemake(done, "--unlock", "--configfile", "tiny.yaml", timeout=120)
    snakemake(
        done, f"{SLOW_DENSE}/model.pt", "--cores", "1", "--rerun-incomplete", "--configfile", "tiny.yaml", timeout=900
    )
    _finished_and_loadable(done, SLOW_DENSE)
    assert not list(done.glob(".snakemake/incomplete/*"))
    # every previously finished file is unchanged, byte for byte
    after = produced(done)
    assert {k: after.get(k) for k in kept} == kept
    # and nothing is left to do for the finished slice
    dry = snakemake(done, "-n", "results/metrics.csv", f"{SLOW_DENSE}/model.pt", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in out_of(dry), out_of(dry)


_KILL_IN_SAVE = textwrap.dedent("""\
    import os, signal, sys
    import torch
    from pwprune import checkpoint
    from pwprune.stages import inputs
    from pwprune.models import arch_dict, build_from_arch

    path, kind = sys.argv[1], sys.argv[2]
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        # write part of the real bytes, then die as a SIGKILL would, mid-write
        import io
        buf = io.BytesIO()
        real_save(obj, buf, *a, **k)
        data = buf.getvalue()
        if hasattr(f, "write"):
            f.write(data[: len(data) // 2]); f.flush()
        else:
            open(f, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save
    if kind == "checkpoint":
        arch = arch_dict("small_cnn", 10, 3, 8)
        checkpoint.save_checkpoint(path, build_from_arch(arch), arch, meta={"new": True})
    else:
        inputs.save_tensor(path, torch.ones(4, 10))
    print("not reached")
    """)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, existing", [("checkpoint", True), ("checkpoint", False), ("teacher", True), ("teacher", False)]
)
def test_sigkill_while_writing_a_checkpoint_keeps_old_file_or_none(tmp_path, kind, existing):
    from pwprune.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from pwprune.models import arch_dict, build_from_arch
    from pwprune.stages.inputs import load_tensor, save_tensor

    path = tmp_path / ("model.pt" if kind == "checkpoint" else "teacher.pt")
    if existing:
        if kind == "checkpoint":
            arch = arch_dict("small_cnn", 10, 3, 8)
            save_checkpoint(path, build_from_arch(arch), arch, meta={"old": True})
        else:
            save_tensor(path, torch.zeros(4, 10))
        old = path.read_bytes()
    script = tmp_path / "die.py"
    script.write_text(_KILL_IN_SAVE)
    proc = subprocess.run(
        [sys.executable, str(script), str(path), kind], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "not reached" not in proc.stdout

    if existing:
        assert path.read_bytes() == old  # the old file, intact
        if kind == "checkpoint":
            meta = load_checkpoint(path)[1]["meta"]
            assert meta["old"] is True and "new" not in meta  # (and its recorded environment)
        else:
            assert torch.equal(load_tensor(path), torch.zeros(4, 10))
    else:
        assert not path.exists()  # no file under the real name
    leftovers = [p for p in tmp_path.iterdir() if p.name not in ("die.py", path.name)]
    assert leftovers, "the half-written temporary file should be there to check"
    for p in leftovers:
        assert p.name.startswith(f".{path.name}.") and p.name.endswith(".tmp"), p.name
        with pytest.raises((CheckpointError, ValueError), match=re.escape(str(p))):
            load_checkpoint(p) if kind == "checkpoint" else load_tensor(p)


# ---------------------------------------------------------------- 4. determinism


@pytest.mark.e2e
def test_same_config_and_seed_give_identical_results_on_cpu(tiny_done, tmp_path):
    second = copy_repo(tmp_path / "second")
    write_config(second, CONFIG)
    snakemake(second, "results/metrics.csv", "--cores", "1", "--configfile", "tiny.yaml")
    # checkpoints and teacher outputs: identical bytes (no time stamps or temp names inside)
    for f in (f"{DENSE}/model.pt", f"{DENSE}/teacher.pt", f"{PRUNED}/model.pt", f"{TUNED}/model.pt"):
        assert (tiny_done / f).read_bytes() == (second / f).read_bytes(), f
    for d in ("data/prepared/tiny",):
        for p in (tiny_done / d).iterdir():
            assert p.read_bytes() == (second / d / p.name).read_bytes(), p
    # every checkpoint's outputs (logits, labels, groups, MACs, environment): identical bytes
    for f in (f"{DENSE}/outputs.npz", f"{PRUNED}/outputs.npz", f"{TUNED}/outputs.npz"):
        assert (tiny_done / f).read_bytes() == (second / f).read_bytes(), f
    # metric rows identical except the measured latency
    for f in ("results/metrics.csv",):
        a, b = pd.read_csv(tiny_done / f), pd.read_csv(second / f)
        assert not a.duplicated([c for c in ("stage", "split", "group", "loss") if c in a]).any(), f
        pd.testing.assert_frame_equal(a.drop(columns="latency_ms"), b.drop(columns="latency_ms"), check_exact=True)
    assert (tiny_done / f"{TUNED}/loss_shares.csv").read_bytes() == (second / f"{TUNED}/loss_shares.csv").read_bytes()


# ---------------------------------------------------------------- 5. divergence


def _diverging(on_divergence=None) -> dict:
    cfg = copy.deepcopy(CONFIG)
    ft = cfg["experiments"]["tiny"]["finetune"]
    ft.update(epochs=2, lr=1.0e8)
    if on_divergence:
        ft["on_divergence"] = on_divergence
    return cfg


@pytest.mark.e2e
def test_divergence_stops_the_job_naming_experiment_stage_epoch(done):
    name = write_config(done, _diverging(), "nan.yaml")
    kept = {k: v for k, v in produced(done).items() if k.startswith((DENSE, PRUNED))}
    proc = snakemake(done, f"{TUNED}/metrics.csv", "--cores", "1", "--configfile", name, check=False, timeout=300)
    out = out_of(proc)
    assert proc.returncode != 0, out
    assert "DivergenceError: experiment tiny, fine-tuning magnitude-none at 0.5 with ce, seed 0:" in out, out
    assert re.search(r"at epoch 1/2 \(lr=100000000\.0\); lower the learning rate", out), out
    for n in ("model.pt", "loss_shares.csv", "history.json"):  # the fine-tuning job's outputs
        assert not (done / TUNED / n).exists(), n
    assert {k: v for k, v in produced(done).items() if k.startswith((DENSE, PRUNED))} == kept


@pytest.mark.e2e
def test_divergence_recorded_as_degenerate_when_asked(done):
    from pwprune.checkpoint import load_checkpoint

    name = write_config(done, _diverging("degenerate"), "deg.yaml")
    snakemake(done, f"{TUNED}/metrics.csv", "--cores", "1", "--configfile", name, timeout=300)
    rows = pd.read_csv(done / TUNED / "metrics.csv")
    assert len(rows) and rows["degenerate"].all()
    assert rows["accuracy"].isna().all() and rows["auroc"].isna().all()
    model, info = load_checkpoint(done / TUNED / "model.pt")
    assert info["meta"]["diverged"] is True
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    log = (done / "logs/tiny/seed0/finetune/magnitude-none-ce/0.5.log").read_text()
    assert "recording the trial as degenerate" in log
    # the aggregate table carries the flag through
    snakemake(done, "results/metrics.csv", "--cores", "1", "--configfile", name, timeout=300)
    table = pd.read_csv(done / "results/metrics.csv")
    assert table.loc[table["stage"] == "finetuned", "degenerate"].all()


# ---------------------------------------------------------------- 6. untrusted checkpoints

SOURCES = [
    p
    for pattern in (
        "pwprune/**/*.py",
        "workflow/**/*.py",
        "workflow/**/*.smk",
        "Snakefile",
        "tests/*.py",
        "benchmarks/**/*.py",
    )
    for p in sorted(REPO.glob(pattern))
]


def _calls(src: str, name: str):
    """Source text of every call `name(...)` (balanced parentheses)."""
    for m in re.finditer(re.escape(name) + r"\s*\(", src):
        depth, i = 0, m.end() - 1
        for j in range(i, len(src)):
            depth += {"(": 1, ")": -1}.get(src[j], 0)
            if depth == 0:
                yield src[m.start() : j + 1]
                break


def test_every_torch_load_passes_weights_only_true():
    calls = []
    for p in SOURCES:
        src = p.read_text()
        forbidden = "weights_only=" + "False"  # spelled apart so this file passes its own check
        assert forbidden not in src.replace(" ", ""), f"{p}: {forbidden} must never be used"
        for call in _calls(src, "torch.load"):
            calls.append((p, call))
            assert re.search(r"weights_only\s*=\s*True", call), f"{p}: {call}"
        # the pipeline itself uses no other deserialiser that can run code on load (tests may:
        # test_checkpoint shows a payload is live, test_data reads CIFAR's own pickles)
        if p.relative_to(REPO).parts[0] != "tests":
            assert not re.search(r"\bpickle\.loads?\(|\bdill\.|\bjoblib\.load\(", src), p
    # the two loaders of the pipeline are found (the check is not vacuous)
    assert {p.relative_to(REPO).as_posix() for p, _ in calls} >= {"pwprune/checkpoint.py", "pwprune/stages/inputs.py"}


@pytest.mark.e2e
def test_hostile_teacher_file_refused_without_running_code(done):
    """The teacher outputs are loaded too (PW fine-tuning): same refusal, named file."""
    cfg = copy.deepcopy(CONFIG)
    cfg["experiments"]["tiny"]["losses"] = ["pw"]
    name = write_config(done, cfg, "pw.yaml")
    marker = done / "MARKER_code_ran"
    teacher = done / DENSE / "teacher.pt"
    torch.save({"format": "pwprune-teacher", "logits": _RunsCode(marker)}, teacher)
    target = "results/tiny/seed0/finetuned/magnitude-none-pw/0.5/model.pt"
    proc = snakemake(done, target, "--cores", "1", "--configfile", name, check=False, timeout=300)
    out = out_of(proc)
    assert proc.returncode != 0, out
    assert f"{DENSE}/teacher.pt: cannot load teacher outputs" in out, out
    assert "rerun the dense training job" in out, out
    assert not marker.exists(), "loading the teacher file ran code from it"
    assert not (done / target).exists()


# ---------------------------------------------------------------- 7. concurrency


@pytest.mark.e2e
def test_second_invocation_on_a_busy_directory_is_refused(done):
    first = _start(done, f"{SLOW_DENSE}/model.pt", "--cores", "1", "--configfile", "tiny.yaml")
    try:
        _wait_for_epoch(done, first)
        second = snakemake(
            done, f"{SLOW_DENSE}/model.pt", "--cores", "1", "--configfile", "tiny.yaml", check=False, timeout=120
        )
        assert second.returncode != 0, out_of(second)
        assert "Directory cannot be locked" in out_of(second), out_of(second)
        assert first.poll() is None, "the first run should still be training"
        out, _ = first.communicate(timeout=900)
    except BaseException:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        raise
    assert first.returncode == 0, out
    _finished_and_loadable(done, SLOW_DENSE)
    log = (done / SLOW_LOG).read_text()
    assert log.count(f"epoch {SLOW_EPOCHS}/{SLOW_EPOCHS} loss") == 1, log  # one training, not two interleaved
    assert not list(done.glob(".snakemake/locks/*"))  # the first run released its lock
