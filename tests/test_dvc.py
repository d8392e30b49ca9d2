"""DVC versions datasets and results; a fresh clone reuses them without retraining.

The end-to-end test plays both collaborators with real git, real DVC and a local directory as
the DVC remote: run the workflow through `dvc repro`, commit dvc.lock, push, clone, pull, the
one post-pull command, and then Snakemake must find nothing to do.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import BIN, copy_repo, snakemake
from pwprune.dvc_view import headline, write_headline

SMOKE = ("--configfile", "tests/smoke.yaml")
# docs/dvc.md's post-pull command (with the smoke configuration the test ran).
POST_PULL = ("results/figures/all", "--touch", "--forceall", "--cores", "1", *SMOKE)
COMPUTE_RULES = {"prepare_data", "train_dense", "prune", "finetune"}


def _env(tmp: Path) -> dict:
    # Keep DVC's per-user state and git's identity out of the developer's home.
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"),
        "DVC_GLOBAL_CONFIG_DIR": str(tmp / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(tmp / "dvc-system"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_CONFIG_GLOBAL": str(tmp / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def _run(cmd, cwd, env, timeout=1800):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc.stdout + proc.stderr


def planned_rules(dry_run_output: str) -> set[str]:
    """Rule names of the jobs a `snakemake -n` run would execute."""
    return set(re.findall(r"^\s*(?:local)?rule (\w+):", dry_run_output, flags=re.M))


def test_planned_rules_parses_snakemake_dry_run():
    out = (
        "Building DAG of jobs...\nJob stats:\njob   count\n\nrule train_dense:\n    input: x\n"
        "localrule all_figures:\n    output: y\n"
    )
    assert planned_rules(out) == {"train_dense", "all_figures"}
    assert planned_rules("Nothing to be done (all requested files are present and up to date).") == set()


def test_headline_is_flat_numbers_per_experiment_method_reduction(tmp_path):
    summary = tmp_path / "summary.csv"
    summary.write_text(
        "experiment,split,method,target_reduction,gap_ce,gap_pw,gap_diff,acc_ce,acc_pw,note\n"
        "e,test,taylor,0.875,0.30,0.10,-0.20,0.81,0.80,\n"
        "e,test,taylor,0.5,0.20,,,0.9,0.9,\n"
        "e,val,taylor,0.875,9,9,9,9,9,\n"
    )
    out = tmp_path / "sub" / "headline.json"
    data = write_headline(summary, out)
    assert json.loads(out.read_text()) == data
    # test split only; no '.' inside keys (DVC flattens nested keys with '.'); NaN -> null
    assert data == {
        "e": {
            "taylor": {
                "r875": {"gap_ce": 0.3, "gap_pw": 0.1, "gap_diff": -0.2, "acc_ce": 0.81, "acc_pw": 0.8},
                "r5": {"gap_ce": 0.2, "gap_pw": None, "gap_diff": None, "acc_ce": 0.9, "acc_pw": 0.9},
            }
        }
    }


def test_headline_names_missing_columns(tmp_path):
    bad = tmp_path / "summary.csv"
    bad.write_text("experiment,method\ne,taylor\n")
    with pytest.raises(ValueError, match=r"summary.csv: missing columns .*gap_pw"):
        headline(bad)


def _files(root: Path, sub: str) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted((root / sub).rglob("*")) if p.is_file()}


@pytest.mark.e2e
@pytest.mark.slow
def test_push_clone_pull_reuses_results_without_retraining(tmp_path):
    if shutil.which("git") is None:  # CI must run this test, as it must the Slurm one
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and git is not installed: the DVC round trip needs it", pytrace=False)
        pytest.skip("needs git")
    env = _env(tmp_path)
    git = lambda cwd, *a: _run(["git", *a], cwd, env)  # noqa: E731
    dvc = lambda cwd, *a: _run([str(BIN / "dvc"), *a], cwd, env)  # noqa: E731

    # --- collaborator A: a git repository of the source, DVC with a local directory remote
    origin = copy_repo(tmp_path / "origin")
    remote = tmp_path / "dvc-remote"
    git(origin, "init", "-q", "-b", "main")
    dvc(origin, "init", "-q")
    dvc(origin, "remote", "add", "-d", "shared", str(remote))
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "source")

    # the documented run: dvc repro hands the run to Snakemake and records it in dvc.lock
    dvc_env = {**env, "PWPRUNE_SNAKEMAKE_ARGS": f"--cores 2 {' '.join(SMOKE)}"}
    _run([str(BIN / "dvc"), "repro"], origin, dvc_env)
    assert (origin / "results/smoke/seed0/dense/model.pt").is_file()
    assert "Data and pipelines are up to date." in dvc(origin, "status")
    lock = (origin / "dvc.lock").read_text()
    assert "path: results" in lock and "path: data/prepared" in lock
    # dvc.lock is what the run produced for git; nothing else in the tree changed
    assert git(origin, "status", "--porcelain").strip() == "?? dvc.lock"
    git(origin, "add", "dvc.lock")
    git(origin, "commit", "-q", "-m", "results of the smoke run")
    dvc(origin, "push")

    # --- collaborator B: a fresh clone, pull, the one post-pull command
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    assert not (clone / "results/smoke").exists()
    dvc(clone, "pull")
    pushed, pulled = _files(origin, "results"), _files(clone, "results")
    checkpoints = [k for k in pushed if k.endswith(".pt")]
    assert len(checkpoints) >= 1 + 2 * 4 + 2 * 4 * 2  # dense + teacher, pruned, fine-tuned
    assert set(pulled) == set(pushed)
    for rel in pushed:
        assert filecmp.cmp(pushed[rel], pulled[rel], shallow=False), rel
    assert _files(clone, "data/prepared").keys() == _files(origin, "data/prepared").keys()
    assert "Data and pipelines are up to date." in dvc(clone, "status")

    snakemake(clone, *POST_PULL)
    dry = snakemake(clone, "-n", "results/figures/all", *SMOKE)
    out = dry.stdout + dry.stderr
    assert not planned_rules(out) & COMPUTE_RULES, out[-3000:]
    assert planned_rules(out) == set() and "Nothing to be done" in out, out[-3000:]
    assert "Data and pipelines are up to date." in dvc(clone, "status")  # touching kept the bytes

    # the post-pull command also recorded Snakemake's metadata: a fine-tuning change in the clone
    # reruns fine-tuning (and what follows) and nothing upstream of it
    smoke = clone / "tests/smoke.yaml"
    smoke.write_text(smoke.read_text().replace("finetune: {epochs: 1, lr: 0.001", "finetune: {epochs: 1, lr: 0.002"))
    dry = snakemake(clone, "-n", "results/figures/all", *SMOKE)
    rules = planned_rules(dry.stdout + dry.stderr)
    assert "finetune" in rules and not rules & {"prepare_data", "train_dense", "prune"}, rules
    git(clone, "checkout", "tests/smoke.yaml")

    # DVC's views: headline metrics, plots, and params diff between two commits
    metrics = json.loads(dvc(clone, "metrics", "show", "--json"))
    head = json.dumps(metrics)
    assert "results/headline.json" in head and "gap_pw" in head and "r875" in head
    dvc(clone, "plots", "show", "-o", str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "index.html").is_file()
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("device: auto", "device: cpu"))
    git(clone, "commit", "-q", "-am", "run on the CPU")
    diff = dvc(clone, "params", "diff", "HEAD~1", "HEAD")
    assert re.search(r"params\.yaml\s+device\s+auto\s+cpu", diff), diff
    assert "pipeline" in dvc(clone, "status")  # the changed params make the stage stale
