"""The Slurm profile against a real single-node Slurm (Debian's slurm-wlm + munge).

A tiny grid runs end to end through `--profile profiles/slurm` (every compute job an sbatch job),
the same grid runs through `--profile profiles/local` in another copy of the repository, and the
two metrics tables must agree in every column except the measured latency.

Slurm is started with tests/slurm/start-slurm.sh when `sinfo` does not answer (needs root and
apt). When it cannot be started the test is skipped with the reason, except under CI=true,
where it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from helpers import REPO, copy_repo, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.e2e, pytest.mark.slow]

START_SCRIPT = REPO / "tests" / "slurm" / "start-slurm.sh"

# 2 data-free methods x 1 target x 1 seed x {ce, pw}: prepare, dense, 2 prune, 4 fine-tune jobs
# through Slurm, then the (local) aggregate.
TINY = """\
active: [tiny]
experiments:
  tiny:
    description: Slurm profile check (numbers mean nothing)
    dataset: {kind: digits, image_size: 8, minority_share: 0.1, seed: 0}
    model: small_cnn
    seeds: [0]
    train: {epochs: 1, lr: 0.003, batch_size: 128}
    prune:
      methods: [random, magnitude]
      targets: [0.5]
      batch_size: 128
    finetune: {epochs: 1, lr: 0.001, batch_size: 128}
    losses: [ce, pw]
    pw: {min_weight: 0.5, gamma: 1.0}
    inference: {batch_size: 512}
    evaluate: {latency_batch: 1, latency_repeats: 3}
    resources:
      prepare: {mem_mb: 1000, runtime: 10}
      train: {mem_mb: 1000, runtime: 10, threads: 1}
      prune: {mem_mb: 1000, runtime: 10, threads: 1}
      finetune: {mem_mb: 1000, runtime: 10, threads: 1}
"""
# one Slurm job per rule's job, except the small ones: the 2 data-free pruning jobs go as one sbatch
# (group small_prune) and the latency of the seed's 7 checkpoints is one job (group small_latency)
EXPECTED_SLURM_RULES = {"prepare_data": 1, "train_dense": 1, "finetune": 4}
EXPECTED_SLURM_GROUPS = {"small_prune": ["prune", "prune"], "small_latency": ["latency"]}
KEY = [
    "experiment",
    "method",
    "loss",
    "prune_loss",
    "finetune_loss",
    "target_reduction",
    "seed",
    "stage",
    "split",
    "group",
]


def _slurm_state() -> str:
    """State of the first node as sinfo reports it, '' when sinfo does not answer."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else ""


def _usable(state: str) -> bool:
    return state.rstrip("*~#!%$@^-").lower() in {"idle", "mixed", "allocated", "completing"}


def _cannot_start(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and Slurm is not available: {reason}", pytrace=False)
    print(f"SKIP test_slurm: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A Slurm that answers sinfo with a usable node; starts one with start-slurm.sh if needed."""
    if _usable(_slurm_state()):
        return
    try:
        proc = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        _cannot_start(f"{START_SCRIPT.name} did not finish in 900 s")
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
        _cannot_start(f"{START_SCRIPT.relative_to(REPO)} exited {proc.returncode}: {detail}")
    state = _slurm_state()
    if not _usable(state):
        _cannot_start(f"{START_SCRIPT.relative_to(REPO)} returned but sinfo reports the node as {state or 'nothing'}")


def _jobs_of(root: Path, states: str = "all") -> list[dict]:
    """The Slurm jobs (still known to slurmctld) whose working directory is root."""
    out = subprocess.run(
        ["squeue", "--noheader", f"--states={states}", "--format=%i|%j|%k|%T|%C|%Z"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    jobs = []
    for line in out.splitlines():
        jobid, name, comment, state, cpus, workdir = line.strip().split("|", 5)
        if Path(workdir).resolve() == root.resolve():
            jobs.append(dict(id=jobid, name=name, comment=comment, state=state, cpus=cpus))
    return jobs


def _metrics(root: Path) -> pd.DataFrame:
    df = pd.read_csv(root / "results" / "metrics.csv")
    return df.sort_values(KEY).reset_index(drop=True)


def test_slurm_profile_matches_local_run(slurm_cluster, tmp_path):
    slurm_root = copy_repo(tmp_path / "slurm")
    local_root = copy_repo(tmp_path / "local")
    for root in (slurm_root, local_root):
        (root / "tiny.yaml").write_text(TINY)

    try:
        # Both runs at once (the Slurm one mostly waits on the queue). The status-check interval
        # is shortened only to keep the test short; everything else comes from the profile.
        with ThreadPoolExecutor(2) as pool:
            slurm_run = pool.submit(
                snakemake,
                slurm_root,
                "results/metrics.csv",
                "--profile",
                "profiles/slurm",
                "--slurm-init-seconds-before-status-checks",
                "5",
                "--configfile",
                "tiny.yaml",
                timeout=1800,
            )
            local_run = pool.submit(
                snakemake,
                local_root,
                "results/metrics.csv",
                "--profile",
                "profiles/local",
                "--configfile",
                "tiny.yaml",
                timeout=1800,
            )
            slurm_proc, local_proc = slurm_run.result(), local_run.result()
    finally:
        # a run killed by its timeout leaves its jobs queued: cancel them
        left = [j["id"] for j in _jobs_of(slurm_root, "PENDING,RUNNING")]
        if left:
            subprocess.run(["scancel", *left], timeout=60)

    out = slurm_proc.stdout + slurm_proc.stderr
    # -- every compute job went through sbatch, and Slurm ran it to completion
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)", out))
    assert len(submitted) == sum(EXPECTED_SLURM_RULES.values()) + len(EXPECTED_SLURM_GROUPS), out[-4000:]
    jobs = {j["id"]: j for j in _jobs_of(slurm_root)}
    assert set(submitted) <= set(jobs), (submitted, jobs)
    rules, groups = {}, {}
    for jobid, log in submitted.items():
        job = jobs[jobid]
        assert job["state"] == "COMPLETED", job
        group = next((g for g in EXPECTED_SLURM_GROUPS if job["comment"].startswith(f"rule_{g}_")), None)
        if group is not None:
            # a group job's Slurm log: under slurm_logs/group_<group>_<rules>, every member's rule ran
            log = Path(log)
            assert log.is_relative_to(slurm_root / ".snakemake" / "slurm_logs"), log
            assert log.parent.name.startswith(f"group_{group}") or log.parent.parent.name.startswith(f"group_{group}")
            text = log.read_text()
            groups[group] = sorted(re.findall(r"^(?:local)?rule ([a-z_]+):", text, re.M))
            n = len(groups[group])
            assert f"{n} of {n} steps (100%) done" in text, text[-3000:]
            continue
        # one CPU per job, as the rule's threads say (and as in the local run)
        assert job["cpus"] == "1", job
        rule = re.match(r"rule_([a-z_]+?)(_wildcards_.*)?$", job["comment"]).group(1)
        rules[rule] = rules.get(rule, 0) + 1
        # the profile keeps the Slurm log of successful jobs, under .snakemake/slurm_logs/rule_*
        log = Path(log)
        assert log.is_relative_to(slurm_root / ".snakemake" / "slurm_logs" / f"rule_{rule}"), log
        text = log.read_text()
        assert f"rule {rule}:" in text and "1 of 1 steps (100%) done" in text, text[-3000:]
    assert rules == EXPECTED_SLURM_RULES
    assert groups == EXPECTED_SLURM_GROUPS
    # the aggregate is a local rule: it ran next to Snakemake, not through the queue
    assert "localrule aggregate:" in out
    assert not (slurm_root / ".snakemake" / "slurm_logs" / "rule_aggregate").exists()
    # the local run submitted nothing
    assert _jobs_of(local_root) == []
    assert "SLURM jobid" not in local_proc.stdout + local_proc.stderr

    # -- the same metrics table: every column but the measured latency, exactly
    via_slurm, local = _metrics(slurm_root), _metrics(local_root)
    assert len(via_slurm) == 2 * 2 * 3 * 3  # methods x losses x stages x groups (one split)
    assert list(via_slurm.columns) == list(local.columns)
    assert (via_slurm["latency_ms"] > 0).all() and (local["latency_ms"] > 0).all()
    pd.testing.assert_frame_equal(
        via_slurm.drop(columns="latency_ms"), local.drop(columns="latency_ms"), check_exact=True
    )
    # so are the per-epoch loss shares (no measured quantity in them)
    assert (slurm_root / "results" / "loss_shares.csv").read_bytes() == (
        local_root / "results" / "loss_shares.csv"
    ).read_bytes()
