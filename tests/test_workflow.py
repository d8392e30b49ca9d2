"""End-to-end tests of the Snakemake pipeline through the real CLI.

One smoke run (the session's `smoke_run`) is read by the result tests; every rerun test works on
its own copy of that completed run (results, logs and `.snakemake/` metadata, file times kept)
and only dry-runs it, so the whole file costs one full run plus a handful of dry runs.

The expected jobs are computed here from the smoke configuration (the grid of experiment ×
seed × method × label × target) independently of the rules, and the complete DAG is checked
against that grid once, so a rerun test failing names exactly which jobs ran too many or few.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import pwprune.config as pc
from helpers import REPO, checkpoint_state, copy_repo, largest_change, reversed_keys, snakemake

pytestmark = pytest.mark.e2e

SMOKE = ("--configfile", "tests/smoke.yaml")
ALL = "results/figures/all"
# The rules that gather every run into tables, figures and the summary.
AFTER = ("aggregate", "figure", "summary", "all_figures")
REQUIRED_COLUMNS = [
    "experiment",
    "dataset",
    "model",
    "method",
    "loss",
    "target_reduction",
    "achieved_reduction",
    "seed",
    "stage",
    "group",
    "accuracy",
    "auroc",
    "params",
    "macs",
    "latency_ms",
    "degenerate",
]


# ---------------------------------------------------------------- the expected grid


def smoke_config(root: Path) -> dict:
    return pc.load_yaml_strict(root / "tests" / "smoke.yaml")


def main_figures() -> list[str]:
    from pwprune.names import MAIN_FIGURES

    return list(MAIN_FIGURES)


def grid(config: dict) -> set[tuple]:
    """Every job of `results/figures/all` as (rule, frozenset of wildcard items)."""
    jobs = set()

    def add(rule, **wc):
        jobs.add((rule, frozenset((k, str(v)) for k, v in wc.items())))

    for exp in config["active"]:
        cfg = config["experiments"][exp]
        add("prepare_data", exp=exp)
        for fig in main_figures():
            add("figure", exp=exp, figure=fig)
        add("teacher_figure", exp=exp)
        for seed in cfg["seeds"]:
            add("train_dense", exp=exp, seed=seed)
            add("latency", exp=exp, seed=seed, table="main")
            add("teacher_diagnostic", exp=exp, seed=seed)
            for method, target, label in itertools.product(
                cfg["prune"]["methods"], cfg["prune"]["targets"], cfg["losses"]
            ):
                ploss, floss = pc.phase_losses(label, method)
                t = pc.target_str(target)
                add("prune", exp=exp, seed=seed, method=method, ploss=ploss, target=t)
                add("finetune", exp=exp, seed=seed, method=method, ploss=ploss, floss=floss, target=t)
    for rule in ("aggregate", "bootstrap", "summary", "all_figures"):
        add(rule)
    return jobs


def upstream(job, full) -> set[tuple]:
    """The jobs of `full` whose outputs `job` reads, from the rules' contracts (data -> dense ->
    pruned -> fine-tuned, each writing its checkpoint's outputs; every checkpoint of a seed -> its
    latency; outputs, latency and loss shares -> the table -> figures and summary; outputs ->
    bootstrap; teacher outputs -> diagnostics -> teacher figure)."""
    rule, w = job[0], dict(job[1])

    def pick(r, **wc):
        return {j for j in full if j[0] == r and all(dict(j[1]).get(k) == v for k, v in wc.items())}

    exp, seed = w.get("exp"), w.get("seed")
    if rule in ("train_dense",):
        return pick("prepare_data", exp=exp)
    if rule in ("prune", "teacher_diagnostic"):
        return pick("prepare_data", exp=exp) | pick("train_dense", exp=exp, seed=seed)
    if rule == "finetune":
        return (
            pick("prepare_data", exp=exp)
            | pick("train_dense", exp=exp, seed=seed)
            | pick("prune", exp=exp, seed=seed, method=w["method"], ploss=w["ploss"], target=w["target"])
        )
    if rule == "latency":
        return (
            pick("train_dense", exp=exp, seed=seed)
            | pick("prune", exp=exp, seed=seed)
            | pick("finetune", exp=exp, seed=seed)
        )
    if rule == "aggregate":
        return pick("train_dense") | pick("prune") | pick("finetune") | pick("latency")
    if rule == "bootstrap":
        return pick("train_dense") | pick("prune") | pick("finetune")
    if rule == "figure":
        return pick("aggregate")
    if rule == "teacher_figure":
        return pick("teacher_diagnostic", exp=w["exp"])
    if rule == "summary":
        return pick("aggregate") | pick("bootstrap") | pick("teacher_diagnostic")
    if rule == "all_figures":
        return pick("figure") | pick("teacher_figure") | pick("summary")
    return set()


def select(jobs, keep) -> set[tuple]:
    return {j for j in jobs if keep(j[0], dict(j[1]))}


def show(jobs) -> str:
    return "\n".join(sorted(f"  {r} {dict(sorted(w))}" for r, w in jobs)) or "  (none)"


# ---------------------------------------------------------------- dry runs

# A job of a group (`group:`, common.smk's small_group: data-free pruning, latency) is listed under
# its "Group job" line, indented by 4 more spaces, fields and all: the indent is matched back.
_JOB = re.compile(r"^( *)(?:local)?rule (\w+):\n((?:\1    .*\n?)*)", re.M)


def parse_dry_run(text: str) -> dict:
    """Jobs of a `snakemake -n` listing: {(rule, wildcards): {field: value}}. The per-rule
    counts are checked against Snakemake's own job-stats table, so a job the parser missed
    fails here rather than passing silently."""
    jobs = {}
    for m in _JOB.finditer(text):
        fields = dict(
            re.match(r"\s+(\w[\w ]*): (.*)", line).groups()
            for line in m.group(3).splitlines()
            if re.match(r"\s+\w[\w ]*: ", line)
        )
        wc = frozenset(tuple(kv.split("=", 1)) for kv in fields.get("wildcards", "").split(", ") if kv)
        key = (m.group(2), wc)
        assert key not in jobs, f"job listed twice: {key}"
        jobs[key] = fields
    counts = {}
    for rule, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    stats = re.search(r"^Job stats:\njob +count\n[- ]+\n((?:.*\n)*?)total +(\d+)", text, re.M)
    if jobs:
        assert stats, f"no job-stats table in:\n{text[-3000:]}"
        table = dict((r, int(n)) for r, n in (line.split() for line in stats.group(1).splitlines()))
        assert table == counts and int(stats.group(2)) == len(jobs), (table, counts)
    return jobs


def dry_run(root: Path, *args: str, target: str = ALL) -> dict:
    proc = snakemake(root, target, "-n", *args, *SMOKE)
    return parse_dry_run(proc.stdout + proc.stderr)


@pytest.fixture
def run_copy(smoke_run, tmp_path):
    """A private copy of the completed smoke run, metadata and file times included."""
    dest = tmp_path / "repo"
    shutil.copytree(smoke_run, dest, symlinks=True)
    return dest


# ---------------------------------------------------------------- the completed run


def test_smoke_dag_matches_the_grid(smoke_run, tmp_path):
    """Forcing every job of the completed run lists exactly the grid computed from the config."""
    proc = snakemake(smoke_run, ALL, "-n", "-F", *SMOKE)
    jobs = parse_dry_run(proc.stdout + proc.stderr)
    expected = grid(smoke_config(smoke_run))
    assert set(jobs) == expected, f"unexpected:\n{show(set(jobs) - expected)}\nmissing:\n{show(expected - set(jobs))}"
    # Each job wrote its log, and the training jobs logged their epochs.
    cfg = smoke_config(smoke_run)["experiments"]["smoke"]
    for (rule, wc), fields in jobs.items():
        assert "log" in fields, f"{rule} {dict(wc)} declares no log"
        log = smoke_run / fields["log"]
        assert log.is_file(), f"{rule} {dict(wc)}: no log {fields['log']}"
        text = log.read_text()
        if rule != "all_figures":  # a one-line `run:` that only lists its inputs
            assert text.strip(), f"{rule} {dict(wc)}: empty log {fields['log']}"
        epochs = {"train_dense": cfg["train"]["epochs"], "finetune": cfg["finetune"]["epochs"]}.get(rule)
        if epochs:
            lines = re.findall(rf"epoch (\d+)/{epochs} loss", text)
            assert lines == [str(e) for e in range(1, epochs + 1)], f"{fields['log']}:\n{text}"
        if rule == "prune":
            assert "pruned (" in text and "MAC reduction (target" in text, f"{fields['log']}:\n{text}"


def test_nothing_to_do_after_a_complete_run(smoke_run):
    proc = snakemake(smoke_run, ALL, "-n", *SMOKE)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_metrics_table_has_exactly_the_grid(smoke_run):
    root = smoke_run
    config = smoke_config(root)
    df = pd.read_csv(root / "results" / "metrics.csv")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    assert not missing, f"results/metrics.csv lacks {missing}"

    expected = []
    for exp in config["active"]:
        cfg = config["experiments"][exp]
        meta = json.loads((root / "data" / "prepared" / exp / "meta.json").read_text())
        from pwprune.data import split_names

        splits = [s for s in split_names(cfg["dataset"]) if s not in ("train", "val")]
        assert splits[0] == "test"
        groups = [*meta["group_names"], "all"]
        assert len(groups) >= 3  # at least two groups, or fairness is moot
        for seed, method, target, label, stage, split, group in itertools.product(
            cfg["seeds"],
            cfg["prune"]["methods"],
            cfg["prune"]["targets"],
            cfg["losses"],
            ("dense", "pruned", "finetuned"),
            splits,
            groups,
        ):
            ploss, floss = pc.phase_losses(label, method)
            expected.append(
                (
                    exp,
                    cfg["dataset"]["kind"],
                    cfg["model"],
                    method,
                    label,
                    ploss,
                    floss,
                    float(target),
                    int(seed),
                    stage,
                    split,
                    group,
                )
            )
    keys = [
        "experiment",
        "dataset",
        "model",
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
    got = list(df[keys].itertuples(index=False, name=None))
    assert len(got) == len(set(got)), "duplicated rows in results/metrics.csv"
    assert set(got) == set(expected), (
        f"unexpected rows: {sorted(set(got) - set(expected))[:5]}\nmissing rows: {sorted(set(expected) - set(got))[:5]}"
    )

    # Values: real numbers in range, dense rows unpruned, each group row counted.
    assert df["accuracy"].between(0, 1).all()
    assert df["auroc"].dropna().between(0, 1).all()
    assert (df["params"] > 0).all() and (df["macs"] > 0).all() and (df["latency_ms"] > 0).all()
    assert set(df["degenerate"].astype(str)) <= {"True", "False"}
    dense = df[df["stage"] == "dense"]
    assert (dense["achieved_reduction"] == 0).all()
    # one dense model per seed, repeated under every comparison
    assert dense.groupby(["seed", "split", "group"])["accuracy"].nunique().eq(1).all()
    dense_macs = dense.groupby("seed")["macs"].first()
    for stage in ("pruned", "finetuned"):
        sub = df[df["stage"] == stage]
        # fewer MACs than dense, by the reported fraction
        removed = 1 - sub["macs"] / sub["seed"].map(dense_macs)
        assert (removed - sub["achieved_reduction"]).abs().max() < 1e-6
    # fine-tuning changes weights, not the architecture
    key = ["method", "loss", "target_reduction", "seed", "split", "group"]
    pruned = df[df["stage"] == "pruned"].set_index(key).sort_index()
    tuned = df[df["stage"] == "finetuned"].set_index(key).sort_index()
    assert (pruned["macs"] == tuned["macs"]).all() and (pruned["params"] == tuned["params"]).all()


def test_every_finetuned_checkpoint_has_new_weights_in_its_pruned_architecture(smoke_run):
    tuned = {wc: r for r, wc in grid(smoke_config(smoke_run)) if r == "finetune"}
    assert tuned
    for wc in tuned:
        w = dict(wc)
        base = smoke_run / "results" / w["exp"] / f"seed{w['seed']}"
        pruned = checkpoint_state(base / "pruned" / f"{w['method']}-{w['ploss']}" / w["target"] / "model.pt")
        after = checkpoint_state(
            base / "finetuned" / f"{w['method']}-{w['ploss']}-{w['floss']}" / w["target"] / "model.pt"
        )
        assert largest_change(pruned, after) > 1e-4, w  # shapes equal, values moved


def test_every_row_names_the_numeric_environment_of_its_checkpoint(smoke_run):
    """Each checkpoint's meta holds the environment its job computed in (its configured thread
    count, deterministic mode, this torch), and every row of the tidy table names it; the summary
    lists it and, the whole run being from one machine, warns about nothing."""
    import torch

    from pwprune.checkpoint import load_checkpoint
    from pwprune.environment import environment_id

    df = pd.read_csv(smoke_run / "results" / "metrics.csv")
    base = smoke_run / "results" / "smoke" / "seed0"
    seen = set()
    for (stage, method, ploss, floss, target), rows in df.groupby(
        ["stage", "method", "prune_loss", "finetune_loss", "target_reduction"]
    ):
        where = {
            "dense": base / "dense",
            "pruned": base / "pruned" / f"{method}-{ploss}" / pc.target_str(target),
            "finetuned": base / "finetuned" / f"{method}-{ploss}-{floss}" / pc.target_str(target),
        }[stage]
        env = load_checkpoint(where / "model.pt")[1]["meta"]["environment"]
        assert env["threads"] == 1 and env["deterministic"] is True and env["torch"] == torch.__version__, where
        assert set(rows["environment"]) == {environment_id(env)}, where
        seen.add(environment_id(env))
    assert len(seen) == 1  # one machine, one thread count for every stage of the smoke run
    summary = (smoke_run / "results" / "summary.md").read_text()
    assert "## Numeric environments" in summary and seen.pop() in summary
    assert "WARNING" not in summary.split("## Numeric environments")[1]


def test_achieved_reduction_within_two_points_of_target(smoke_run):
    df = pd.read_csv(smoke_run / "results" / "metrics.csv")
    pruned = df[df["stage"].isin(["pruned", "finetuned"])]
    off = pruned[(pruned["achieved_reduction"] - pruned["target_reduction"]).abs() > 0.02]
    assert off.empty, (
        off[["method", "loss", "target_reduction", "achieved_reduction", "stage"]].drop_duplicates().to_string()
    )
    # prune.json says the same as the table, for every pruning job of the grid
    infos = sorted((smoke_run / "results").glob("smoke/seed*/pruned/*/*/prune.json"))
    expected = sorted(
        smoke_run
        / "results"
        / "smoke"
        / f"seed{w['seed']}"
        / "pruned"
        / f"{w['method']}-{w['ploss']}"
        / w["target"]
        / "prune.json"
        for w in (dict(wc) for r, wc in grid(smoke_config(smoke_run)) if r == "prune")
    )
    assert infos == expected and infos
    for info in infos:
        data = json.loads(info.read_text())
        assert data["within_tolerance"] is True, info
        assert abs(data["achieved_reduction"] - float(info.parent.name)) <= 0.02, info


def test_figures_listed_by_all_exist_and_are_valid(smoke_run):
    from PIL import Image

    listed = (smoke_run / ALL).read_text().split()
    config = smoke_config(smoke_run)
    expected = {
        f"results/figures/{exp}/{fig}.{ext}"
        for exp in config["active"]
        for fig in main_figures()
        for ext in ("png", "pdf")
    }
    assert expected <= set(listed), expected - set(listed)
    assert "results/summary.md" in listed
    for rel in listed:
        path = smoke_run / rel
        assert path.is_file() and path.stat().st_size > 1000, rel
        if rel.endswith(".png"):
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                assert im.format == "PNG" and min(im.size) > 200, (rel, im.size)
        elif rel.endswith(".pdf"):
            data = path.read_bytes()
            assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:], rel
    summary = (smoke_run / "results" / "summary.md").read_text()
    for method in config["experiments"]["smoke"]["prune"]["methods"]:
        assert method in summary, f"{method} missing from summary.md"
    assert (smoke_run / "results" / "summary.csv").is_file()
    # the ranking (issue 14, item 5): every method × loss × target fine-tuned, one seed: no t-test
    assert "## Fairness methods ranked by worst-group drop" in summary
    ranked = pd.read_csv(smoke_run / "results" / "ranking.csv")
    smoke = config["experiments"]["smoke"]
    want = {(m, l, t) for m in smoke["prune"]["methods"] for l in smoke["losses"] for t in smoke["prune"]["targets"]}
    assert set(zip(ranked["method"], ranked["loss"], ranked["target_reduction"])) == want
    assert ranked["vs_ref_p"].isna().all() and (ranked["n_seeds"] == 1).all()


# ---------------------------------------------------------------- what reruns after a change


def _override(root: Path, exp: str, section: str, key: str, value) -> tuple[str, ...]:
    """A second configfile changing one value (Snakemake merges it over tests/smoke.yaml); key
    None: `section` is the experiment's own key."""
    change = {section: value} if key is None else {section: {key: value}}
    (root / "override.yaml").write_text(yaml.safe_dump({"experiments": {exp: change}}))
    return ("--configfile", "tests/smoke.yaml", "override.yaml")


def _data_free(method):
    return method in pc.DATA_FREE_METHODS


CONFIG_CHANGES = {
    # PW gamma: data-driven pruning with a PW loss, every PW fine-tuning, and what gathers them.
    "pw_gamma": (
        ("pw", "gamma", lambda v: v + 1.0),
        "Params have changed",
        lambda r, w: (
            (r == "prune" and not _data_free(w["method"]) and w["ploss"].startswith("pw"))
            or (r == "finetune" and w["floss"].startswith("pw"))
            or r == "teacher_diagnostic"
        ),
    ),
    "finetune_lr": (("finetune", "lr", lambda v: v * 2), "Params have changed", lambda r, w: r == "finetune"),
    "train_epochs": (("train", "epochs", lambda v: v + 1), "Params have changed", lambda r, w: r != "prepare_data"),
    "minority_share": (
        ("dataset", "minority_share", lambda v: round(v + 0.05, 3)),
        "Params have changed",
        lambda r, w: True,
    ),
    # Taylor's restore_weights "authors": the dense weights come back in the PW arm only
    "taylor_restore_authors": (
        ("prune", "taylor", lambda v: {**v, "restore_weights": "authors"}),
        "Params have changed",
        lambda r, w: r == "prune" and w["method"] == "taylor" and w["ploss"].startswith("pw"),
    ),
}


@pytest.mark.parametrize("name", list(CONFIG_CHANGES))
def test_config_change_reruns_exactly_what_depends_on_it(run_copy, name):
    (section, key, change), reason, changed = CONFIG_CHANGES[name]
    config = smoke_config(run_copy)
    old = config["experiments"]["smoke"][section][key]
    args = _override(run_copy, "smoke", section, key, change(old))
    proc = snakemake(run_copy, ALL, "-n", *args)
    jobs = parse_dry_run(proc.stdout + proc.stderr)

    full = grid(config)
    direct = select(full, changed)
    expected = direct | select(full, lambda r, w: r in AFTER) | _downstream(full, direct)
    assert set(jobs) == expected, (
        f"{name}: ran but should not:\n{show(set(jobs) - expected)}\n"
        f"should run but did not:\n{show(expected - set(jobs))}"
    )
    check_reasons(jobs, full, direct, reason)


def check_reasons(jobs, full, direct, reason):
    """A job the change touches reruns because of it (not because of file times), unless a job
    upstream of it reruns first (then Snakemake names only that)."""
    for job in direct:
        why = jobs[job]["reason"]
        if job in _downstream(full, direct - {job}):
            assert why.startswith("Input files updated by another job"), (job, why)
        else:
            assert re.search(reason, why), (job, why)


def _downstream(full, changed):
    """Every job of `full` that reads, directly or through other jobs, an output of a job in
    `changed` (those jobs themselves only where they read another changed one)."""
    up = {j: upstream(j, full) for j in full}
    out, grew = set(), True
    while grew:
        new = {j for j in full if j not in out and up[j] & (set(changed) | out)}
        grew, out = bool(new), out | new
    return out


CODE_CHANGES = {
    # pwprune/ code reaches a job through its code-hash param (common.smk's CODE); a script's
    # own text is also Snakemake's code trigger
    "pwprune/pruning/target.py": ("prune", "Params have changed"),
    "workflow/scripts/prune.py": ("prune", "Code has changed"),
    "workflow/scripts/finetune.py": ("finetune", "Code has changed"),
}


@pytest.mark.parametrize("path", list(CODE_CHANGES))
def test_code_change_reruns_its_stage_and_what_follows(run_copy, path):
    stage, reason = CODE_CHANGES[path]
    with open(run_copy / path, "a") as f:
        f.write("\n_EDITED = 1  # an edit of the stage's code\n")
    jobs = dry_run(run_copy)
    full = grid(smoke_config(run_copy))
    direct = select(full, lambda r, w: r == stage)
    expected = direct | select(full, lambda r, w: r in AFTER) | _downstream(full, direct)
    assert set(jobs) == expected, (
        f"{path}: ran but should not:\n{show(set(jobs) - expected)}\n"
        f"should run but did not:\n{show(expected - set(jobs))}"
    )
    check_reasons(jobs, full, direct, reason)


# Issue 15's table: each edit against a completed run, and the exact set of rules it must rerun
# directly (what reads their outputs follows, computed by _downstream). An "append" adds a
# statement (a change of code); a "comment" adds a comment, which changes no value and so reruns
# nothing (the code hash covers the syntax tree, pwprune.provenance.code_text).
EDITS = {
    "plots.py edit": (("append", "pwprune/plots.py"), {"figure"}),
    # the table's columns are defined in pwprune/summary.py, so the aggregation runs its code too
    "summary.py edit": (("append", "pwprune/summary.py"), {"aggregate", "figure", "summary"}),
    "fine-tuning stage edit": (("append", "pwprune/stages/finetune.py"), {"finetune"}),
    # the convergence diagnostic: the table of validation curves, the summary's section and the
    # figures' module (the figure rule is one); the fine-tuning jobs use it only for their log's
    # warnings (LOG_ONLY_IMPORTS), so it reruns no fine-tuning
    "convergence diagnostic edit": (
        ("append", "pwprune/convergence.py"),
        {"aggregate", "summary", "figure"},
    ),
    # the note on annealed schedules is kept out of the fine-tuning job's code (pwprune/schedule.py):
    # editing it reruns the table of validation curves (their lr column) and the summary only
    "schedule note edit": (("append", "pwprune/schedule.py"), {"aggregate", "summary"}),
    # rule evaluate (one checkpoint by path) is not part of the grid: nothing of it reruns
    "evaluation stage edit": (("append", "pwprune/stages/evaluate.py"), set()),
    # metrics are a function of the checkpoints' outputs: the table and the bootstrap, never a model
    "metric code edit": (("append", "pwprune/metrics.py"), {"aggregate", "bootstrap"}),
    "metric code comment": (("comment", "pwprune/metrics.py"), set()),
    "latency code edit": (("append", "pwprune/stages/latency.py"), {"latency"}),
    # the bootstrap's statistics rerun it and the summary only, never an evaluation
    "bootstrap code edit": (("append", "pwprune/bootstrap.py"), {"bootstrap"}),
    # the outputs' file format is written by the checkpoint jobs and read by the table and bootstrap
    "outputs format edit": (
        ("append", "pwprune/outputs.py"),
        {"train_dense", "prune", "finetune", "aggregate", "bootstrap"},
    ),
    "evaluate.latency_repeats 3 -> 4": (("config", "evaluate", "latency_repeats", 4), {"latency"}),
    "inference.batch_size 512 -> 256": (
        ("config", "inference", "batch_size", 256),
        {"train_dense", "prune", "finetune"},
    ),
    "log label wording": (("replace", "pwprune/stages/labels.py", "fine-tuning", "fine-tuning (reworded)"), set()),
    # numerics are configuration (issue 20): the thread count a stage computes with reruns that
    # stage and what follows; latency computes with fine-tuning's unless evaluate has its own
    "resources.train.threads 1 -> 2": (("config", "resources", "train", {"threads": 2}), {"train_dense"}),
    "resources.finetune.threads 1 -> 2": (
        ("config", "resources", "finetune", {"threads": 2}),
        {"finetune", "latency"},
    ),
    # memory and time only decide where and when a job runs
    "resources.train.mem_mb": (("config", "resources", "train", {"mem_mb": 3000, "runtime": 20}), set()),
    "deterministic true -> false": (
        ("config", "deterministic", None, False),
        {"train_dense", "prune", "finetune", "latency"},
    ),
    # the training loops' arithmetic (issue 13): dense training, fine-tuning and what follows
    "precision fp32 -> bf16": (("config", "precision", None, "bf16"), {"train_dense", "finetune"}),
    # how often a training job refreshes its resume state changes no value
    "resources.finetune.resume_minutes": (("config", "resources", "finetune", {"resume_minutes": 3}), set()),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_each_edit_reruns_exactly_its_rules(run_copy, name):
    edit, rules = EDITS[name]
    args = SMOKE
    if edit[0] in ("append", "comment"):
        with open(run_copy / edit[1], "a") as f:
            f.write(
                "\n_EDITED = 1  # an edit of code\n" if edit[0] == "append" else "\n# a comment: no value changes\n"
            )
    elif edit[0] == "replace":
        path = run_copy / edit[1]
        text = path.read_text()
        assert text.count(edit[2]) == 1, edit
        path.write_text(text.replace(edit[2], edit[3]))
    else:
        args = _override(run_copy, "smoke", *edit[1:])
    proc = snakemake(run_copy, ALL, "-n", *args)
    out = proc.stdout + proc.stderr
    jobs = parse_dry_run(out)
    full = grid(smoke_config(run_copy))
    direct = select(full, lambda r, w: r in rules)
    expected = direct | _downstream(full, direct)
    assert set(jobs) == expected, (
        f"{name}: ran but should not:\n{show(set(jobs) - expected)}\n"
        f"should run but did not:\n{show(expected - set(jobs))}"
    )
    if not rules:
        assert "Nothing to be done" in out, out
    check_reasons(jobs, full, direct, "Params have changed")


def test_each_job_ran_only_code_that_its_hash_covers(smoke_run):
    """Every job's log ends with the pwprune modules it loaded; each must be in the static import
    closure of the rule's script that its code hash covers (pwprune.provenance), so no import
    escapes the hash (a dynamic one, say), and stage code never leaks into another rule's."""
    from pwprune import provenance

    scripts = {
        "prepare_data": "prepare_data",
        "train_dense": "train_dense",
        "prune": "prune",
        "finetune": "finetune",
        "latency": "latency",
        "teacher_diagnostic": "teacher_diagnostic",
        "aggregate": "aggregate",
        "bootstrap": "bootstrap",
        "figure": "plot",
        "teacher_figure": "teacher_figure",
        "summary": "summary",
    }
    proc = snakemake(smoke_run, ALL, "-n", "-F", *SMOKE)
    seen = set()
    for (rule, _), fields in parse_dry_run(proc.stdout + proc.stderr).items():
        if rule not in scripts:
            continue
        text = (smoke_run / fields["log"]).read_text()
        line = re.search(r"^pwprune modules loaded: (.*)$", text, re.M)
        assert line, f"{fields['log']}: no module line"
        loaded = set(line.group(1).split())
        static = set(
            provenance.module_names(
                provenance.code_files(REPO / "workflow" / "scripts" / f"{scripts[rule]}.py", root=REPO), root=REPO
            )
        )
        assert loaded <= static, (rule, sorted(loaded - static))
        seen.add(rule)
        if rule == "figure":  # the figure jobs never run model, training or pruning code
            assert not {m for m in loaded if m.split(".")[1:2] in (["models"], ["train"], ["pruning"])}, loaded
    assert seen == set(scripts), set(scripts) - seen


def test_log_labels_are_text_only():
    """The module left out of every code hash reaches only log text: it imports nothing from
    pwprune, and each label is a plain string built from the wildcards."""
    import ast
    from types import SimpleNamespace

    from pwprune import provenance
    from pwprune.stages import labels

    for name in provenance.LOG_TEXT_ONLY:
        tree = ast.parse(provenance.module_file(name).read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not imports, name
    # distinctive values: "experiment", "pruning" and every other fixed word of a label contain
    # neither, so a label that lost the experiment name or the seed fails here
    w = SimpleNamespace(exp="qzx-exp", seed="9137", method="taylor", ploss="pw", floss="ce", target="0.5")
    for fn in (labels.train_dense, labels.prune, labels.finetune):
        label = fn(w)
        assert isinstance(label, str) and "qzx-exp" in label and "9137" in label, label


def _log_only_uses(tree, declared):
    """(name, where) of every use of a name that `tree` imports from a `declared` module, where
    is "log" when the use can only reach a log line: an argument of log(...), or the iterable of
    a for loop whose body only passes its loop variable to log(...)."""
    import ast

    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in declared:
            bound |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            assert not {a.name for a in node.names} & declared, "import the names, not the module"
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def only_logs(loop):
        var = getattr(loop.target, "id", None)
        return all(
            isinstance(st, ast.Expr)
            and isinstance(st.value, ast.Call)
            and getattr(st.value.func, "id", None) == "log"
            and [getattr(a, "id", None) for a in st.value.args] == [var]
            for st in loop.body
        )

    uses = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id in bound and isinstance(node.ctx, ast.Load)):
            continue
        where, child, up = "elsewhere", node, parents.get(node)
        while up is not None:
            if isinstance(up, ast.Call) and getattr(up.func, "id", None) == "log" and child in up.args:
                where = "log"
                break
            if isinstance(up, ast.For) and child is up.iter and only_logs(up):
                where = "log"
                break
            if isinstance(up, ast.stmt):
                break
            child, up = up, parents.get(up)
        uses.append((node.id, where))
    return bound, uses


def test_log_only_imports_reach_only_the_log():
    """A module that a file lists in LOG_ONLY_IMPORTS is left out of its rules' code hash
    (pwprune.provenance), which is right only while every use of it in that file ends in the
    job's log. The fine-tuning stage declares the convergence criterion so."""
    import ast

    from pwprune import provenance

    declaring = {}
    for f in sorted((REPO / "pwprune").rglob("*.py")):
        if provenance.log_only_imports(f):
            declaring[f.relative_to(REPO).as_posix()] = provenance.log_only_imports(f)
    assert declaring == {"pwprune/stages/finetune.py": frozenset({"pwprune.convergence"})}, declaring
    for rel, declared in declaring.items():
        bound, uses = _log_only_uses(ast.parse((REPO / rel).read_text()), declared)
        assert bound and uses, rel  # the declaration names a module the file uses
        assert all(where == "log" for _, where in uses), (rel, uses)
    # the check itself tells a use that reaches a result from one that reaches the log
    leaky = ast.parse(
        "from pwprune.convergence import group_verdicts, warnings\n"
        "def run(history, log):\n"
        "    for line in warnings(group_verdicts(history)):\n"
        "        log(line)\n"
        "    history.append(group_verdicts(history))\n"
    )
    _, uses = _log_only_uses(leaky, {"pwprune.convergence"})
    assert sorted(uses) == [("group_verdicts", "elsewhere"), ("group_verdicts", "log"), ("warnings", "log")]


def test_new_raw_data_version_reruns_preparation_and_everything_after(run_copy):
    """`dvc add` of new raw bytes rewrites data/raw/<name>.dvc; that alone must redo the data."""
    raw = run_copy / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "digits.dvc").write_text("outs:\n- md5: 0123456789abcdef.dir\n  path: digits\n")
    jobs = dry_run(run_copy)
    assert set(jobs) == grid(smoke_config(run_copy)), show(set(jobs) ^ grid(smoke_config(run_copy)))
    assert "data/raw/digits.dvc" in jobs[next(k for k in jobs if k[0] == "prepare_data")]["reason"]


def test_single_target_by_path_runs_only_its_upstream(tmp_path):
    root = copy_repo(tmp_path / "repo")
    target = "results/smoke/seed0/pruned/taylor-pw/0.5/metrics.csv"
    jobs = dry_run(root, target=target)
    assert set(jobs) == {
        ("prepare_data", frozenset({("exp", "smoke")})),
        ("train_dense", frozenset({("exp", "smoke"), ("seed", "0")})),
        (
            "prune",
            frozenset({("exp", "smoke"), ("seed", "0"), ("method", "taylor"), ("ploss", "pw"), ("target", "0.5")}),
        ),
        # the metrics of that one checkpoint, not of the dense model's
        ("evaluate", frozenset({("exp", "smoke"), ("seed", "0"), ("checkpoint", "pruned/taylor-pw/0.5")})),
    }, show(jobs)


def test_single_finetuned_target_in_a_completed_run(run_copy):
    """After a change, asking for one file reruns only that file's chain."""
    _override(run_copy, "smoke", "pw", "gamma", 3.0)
    target = "results/smoke/seed0/finetuned/autobot-pw-pw/0.875/metrics.csv"
    proc = snakemake(run_copy, target, "-n", "--configfile", "tests/smoke.yaml", "override.yaml")
    jobs = parse_dry_run(proc.stdout + proc.stderr)
    w = {("exp", "smoke"), ("seed", "0"), ("method", "autobot"), ("ploss", "pw"), ("target", "0.875")}
    evaluation = {("exp", "smoke"), ("seed", "0"), ("checkpoint", "finetuned/autobot-pw-pw/0.875")}
    assert set(jobs) == {
        ("prune", frozenset(w)),
        ("finetune", frozenset(w | {("floss", "pw")})),
        ("evaluate", frozenset(evaluation)),
    }, show(jobs)


# ---------------------------------------------------------------- the ablation grid


def test_ablation_all_builds_every_label_and_a_real_figure(run_copy):
    from PIL import Image

    from pwprune.names import ABLATION_LABELS

    snakemake(run_copy, "results/ablation/all", "--cores", "2", *SMOKE)
    cfg = smoke_config(run_copy)["experiments"]["smoke"]
    df = pd.read_csv(run_copy / "results" / "ablation" / "metrics.csv")
    fin = df[(df["stage"] == "finetuned") & (df["group"] == "all") & (df["split"] == "test")]
    expected = {
        (m, float(t), label)
        for m in cfg["ablation"]["methods"]
        for t in cfg["ablation"]["targets"]
        for label in ABLATION_LABELS
    }
    assert set(zip(fin["method"], fin["target_reduction"], fin["loss"])) == expected
    assert fin["accuracy"].between(0, 1).all()
    listed = (run_copy / "results" / "ablation" / "all").read_text()
    assert "results/figures/smoke/ablation.png" in listed
    # not the 7 x 3 in placeholder page (1400 x 600 px at 200 dpi): panels were drawn
    with Image.open(run_copy / "results" / "figures" / "smoke" / "ablation.png") as im:
        assert im.size != (1400, 600), im.size


# ---------------------------------------------------------------- the HTML report


def test_html_report_is_self_contained_with_every_figure_and_caption(run_copy):
    snakemake(run_copy, "--report", "results/report.html", *SMOKE)
    html = (run_copy / "results" / "report.html").read_text()
    assert not re.search(r"<(?:script|img)[^>]+src=\"(?!data:)|<link[^>]+href=\"(?!data:)", html), (
        "the report loads something from outside itself"
    )
    config = smoke_config(run_copy)
    report_dir = run_copy / "workflow" / "report"
    embedded = [
        (f"results/figures/{exp}/{fig}.png", f"{fig}.rst") for exp in config["active"] for fig in main_figures()
    ] + [("results/summary.md", "summary.rst")]
    for rel, caption in embedded:
        name = Path(rel).name
        # the file itself, embedded byte for byte
        m = re.search(rf"data:[\w/+.-]+;charset=utf8;filename={re.escape(name)};base64,([A-Za-z0-9+/=]+)", html)
        assert m, f"{name} is not embedded in the report"
        assert base64.b64decode(m.group(1)) == (run_copy / rel).read_bytes(), f"{name} differs"
        # with its caption (rendered from reStructuredText, stored as a JSON string)
        entry = re.search(rf'"filename": "{re.escape(name)}",[^{{}}]*?"caption": "((?:[^"\\]|\\.)*)"', html)
        assert entry, f"{name} has no caption entry in the report"
        text = json.loads(f'"{entry.group(1)}"')
        words = " ".join((report_dir / caption).read_text().split()[:8])
        assert words in re.sub(r"\s+", " ", text), f"caption of {name} is not {caption}: {text[:200]}"


def test_same_config_in_another_key_order_reruns_nothing(run_copy):
    """params.yaml and the smoke overlay rewritten with their keys reversed at every depth, and a
    number the schema says is a float written as an int (`gamma: 1` for 1.0): after a complete
    run, nothing to do (issue 13: rule params are canonical, pwprune.config.canonicalize)."""
    params = yaml.safe_load((run_copy / "params.yaml").read_text())
    smoke = reversed_keys(yaml.safe_load((run_copy / "tests" / "smoke.yaml").read_text()))
    assert smoke["experiments"]["smoke"]["pw"]["gamma"] == 1.0
    smoke["experiments"]["smoke"]["pw"]["gamma"] = 1
    (run_copy / "params.yaml").write_text(yaml.safe_dump(reversed_keys(params), sort_keys=False))
    (run_copy / "reordered.yaml").write_text(yaml.safe_dump(smoke, sort_keys=False))
    assert "gamma: 1\n" in (run_copy / "reordered.yaml").read_text()
    proc = snakemake(run_copy, ALL, "-n", "--configfile=reordered.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    # a real change still reruns: the same files with gamma 2
    smoke["experiments"]["smoke"]["pw"]["gamma"] = 2
    (run_copy / "reordered.yaml").write_text(yaml.safe_dump(smoke, sort_keys=False))
    proc = snakemake(run_copy, ALL, "-n", "--configfile=reordered.yaml")
    assert "Params have changed" in proc.stdout + proc.stderr
