"""The paper's settings in params.yaml match docs/paper-settings.md, the fidelity table against the
authors' code: every row's pwprune value is params.yaml's, every difference from the authors' value
is explained, every paper experiment has a section and every hyperparameter key of it a row. And
Snakemake builds the DAG of every paper setting at once (a dry run on the tests' fake datasets in
their real on-disk formats, with empty stand-ins for the ImageNet weights files)."""

from __future__ import annotations

import re
from collections import namedtuple

import pytest
import yaml

import pwprune.config as pc
from data_fixtures import write_celeba, write_cifar10, write_fitzpatrick
from helpers import REPO, snakemake

DOC = REPO / "docs" / "paper-settings.md"
NOT_PAPER = (
    "default",
    "digits_memorised",
    "default_authors",
    "default_1epoch",
    "baselines",
)  # the embedded experiments; every other one is a paper setting
# keys of an experiment the table skips: how the jobs run, not what the method is
NOT_HYPERPARAMETERS = (
    "description",
    "inference",
    "evaluate",
    "resources",
    "deterministic",
    "precision",
    "channels_last",
)
# rows every section must have, whatever the setting
CORE_KEYS = [
    "dataset.kind",
    "dataset.image_size",
    "model",
    "pretrained",
    "seeds",
    "losses",
    "train.optimizer",
    "train.lr",
    "train.epochs",
    "train.batch_size",
    "train.weight_decay",
    "train.scheduler",
    "train.backbone_lr_scale",
    "train.backbone_lr_growth",
    "train.augment",
    "finetune.optimizer",
    "finetune.lr",
    "finetune.epochs",
    "finetune.batch_size",
    "finetune.weight_decay",
    "finetune.scheduler",
    "finetune.augment",
    "prune.methods",
    "prune.targets",
    "prune.tolerance",
    "prune.batch_size",
    "prune.autobot.iterations",
    "prune.autobot.lr",
    "prune.autobot.beta",
    "prune.autobot.binarization",
    "prune.taylor.schedule",
    "prune.taylor.batches_per_step",
    "prune.taylor.prunes_per_step",
    "prune.taylor.lr",
    "prune.taylor.momentum",
    "pw.methods.autobot",
    "pw.methods.taylor",
    "pw.min_weight",
    "pw.gamma",
]

Row = namedtuple("Row", "hyperparameter key authors pwprune source notes")
UNSET = "(unset)"
_MISSING = object()


# ---------------------------------------------------------------- reading the table


def parse(text: str) -> dict:
    """{section name: [Row, ...]} from the markdown: a section is a `## name` heading, its rows
    the body lines of the table under it (cells split on unescaped `|`)."""
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None and line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cells[0] == "hyperparameter" or set("".join(cells)) <= set("-: "):
                continue  # header or separator
            assert len(cells) == 6, f"{current}: a row needs 6 cells, got {len(cells)}: {line}"
            sections[current].append(Row(*cells))
    return sections


def value(cell: str):
    """A backticked cell is a YAML value; `(unset)` is the absent key; anything else is text."""
    m = re.fullmatch(r"`([^`]*)`", cell)
    if m:
        return ("yaml", yaml.safe_load(m.group(1)))
    return ("unset", None) if cell == UNSET else ("text", cell)


def key_path(cell: str):
    """The row's params.yaml key (under experiments.<setting>), or None for `—`."""
    m = re.fullmatch(r"`([A-Za-z0-9_.]+)`", cell)
    assert m or cell == "—", f"key cell must be a backticked dotted path or —, got {cell!r}"
    return m.group(1) if m else None


def lookup(exp: dict, path: str):
    cur = exp
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def leaf_paths(d: dict, prefix=""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from leaf_paths(v, path + ".")
        else:
            yield path


def problems(sections: dict, experiments: dict) -> list[str]:
    """Everything wrong between the table and the experiments, one line each."""
    out = []
    paper = [n for n in experiments if n not in NOT_PAPER]
    out += [f"params.yaml experiment {n!r} has no section in {DOC.name}" for n in paper if n not in sections]
    out += [f"section {n!r} names no experiment of params.yaml" for n in sections if n not in experiments]
    for name, rows in sections.items():
        exp = experiments.get(name)
        if exp is None:
            continue
        keys = []
        for r in rows:
            where = f"{name} / {r.hyperparameter}"
            authors, ours = value(r.authors), value(r.pwprune)
            if not r.source:
                out.append(f"{where}: no source")
            if authors != ours and not r.notes:
                out.append(f"{where}: the authors' {r.authors} differs from pwprune's {r.pwprune}, unexplained")
            key = key_path(r.key)
            if key is None:
                continue
            keys.append(key)
            actual = lookup(exp, key)
            if ours[0] == "text":
                out.append(f"{where}: a keyed row's pwprune value must be `yaml` or {UNSET}, got {r.pwprune!r}")
            elif ours[0] == "unset" and actual is not _MISSING:
                out.append(f"{where}: table says {key} is unset; params.yaml has {actual!r}")
            elif ours[0] == "yaml" and (actual is _MISSING or actual != ours[1]):
                got = "nothing" if actual is _MISSING else repr(actual)
                out.append(f"{where}: table says {key} = {ours[1]!r}; params.yaml has {got}")
        out += [f"{name}: no row for {k}" for k in CORE_KEYS if k not in keys]
        for leaf in leaf_paths({k: v for k, v in exp.items() if k not in NOT_HYPERPARAMETERS}):
            if not any(leaf == k or leaf.startswith(k + ".") for k in keys):
                out.append(f"{name}: params.yaml key {leaf} has no row in the table")
    return out


# ---------------------------------------------------------------- the shipped table and params.yaml


@pytest.fixture(scope="module")
def experiments():
    return pc.load_yaml_strict(REPO / "params.yaml")["experiments"]


@pytest.fixture(scope="module")
def sections():
    return parse(DOC.read_text())


def test_shipped_params_match_the_table(sections, experiments):
    found = problems(sections, experiments)
    assert not found, "\n".join(found)


def test_table_covers_the_eleven_settings(sections, experiments):
    paper = [n for n in experiments if n not in NOT_PAPER]
    assert len(paper) == 11, paper  # scripts/prune.py:26-28 of the authors' code lists eleven
    assert all(len(sections[n]) >= len(CORE_KEYS) for n in paper)


def test_taylor_batches_per_step_counts_the_authors_plus_one(sections, experiments):
    """--tay_batches B prunes after every (B + 1)-th batch in the authors' code (self.batches =
    B + 1, counter % self.batches == 0): the table records both, params.yaml the count of batches."""
    for name, rows in sections.items():
        row = next(r for r in rows if r.key == "`prune.taylor.batches_per_step`")
        authors, ours = value(row.authors)[1], value(row.pwprune)[1]
        assert ours == authors + 1 == experiments[name]["prune"]["taylor"]["batches_per_step"], name


# ---------------------------------------------------------------- the checker itself

SAMPLE = """# t

## exp_a

| hyperparameter | params.yaml key | authors | pwprune | source | notes |
|---|---|---|---|---|---|
| lr | `train.lr` | `0.001` | `0.001` | m.py:1 |  |
| wd | `train.weight_decay` | `0.0` | `0.01` | m.py:2 |  |
| size | `dataset.image_size` | 178x218 | `178` | h.py:3 | square storage |
| ratio | `train.backbone_lr_scale` | one lr | (unset) | r.py:4 | default 1 |
| norm | — | \\|x\\| mean | \\|x\\| mean | u.py:5 |  |
"""


def test_checker_reports_mismatches_gaps_and_unexplained_differences():
    exps = {
        "default": {},
        "exp_a": {
            "dataset": {"image_size": 178},
            "train": {"lr": 0.01, "weight_decay": 0.01, "backbone_lr_scale": 0.1},
        },
        "exp_b": {"model": "x"},
    }
    sections = parse(SAMPLE)
    assert [r.authors for r in sections["exp_a"]][-1] == "|x| mean"  # escaped pipes stay in the cell
    found = "\n".join(problems(sections, exps))
    assert "exp_a / lr: table says train.lr = 0.001; params.yaml has 0.01" in found
    assert "exp_a / wd: the authors' `0.0` differs from pwprune's `0.01`, unexplained" in found
    assert "exp_a / size" not in found  # explained difference, matching value
    assert "exp_a / ratio: table says train.backbone_lr_scale is unset; params.yaml has 0.1" in found
    assert "params.yaml experiment 'exp_b' has no section" in found
    assert "exp_a: no row for model" in found
    exps["exp_a"]["train"]["momentum"] = 0.9
    assert "exp_a: params.yaml key train.momentum has no row in the table" in "\n".join(problems(sections, exps))


# ---------------------------------------------------------------- Snakemake accepts them all


@pytest.mark.e2e
@pytest.mark.slow
def test_dry_run_builds_the_dag_of_every_paper_setting(repo_copy, tmp_path):
    """All paper settings active at once, on fake CIFAR-10, CelebA and Fitzpatrick17k in their real
    on-disk layouts and empty files named as torchvision's ImageNet weights in a temporary
    TORCH_HOME: the schema accepts every key, the start-up checks pass, and the DAG has the grid."""
    from pwprune.weights import IMAGENET_FILES

    raw = repo_copy / "data" / "raw"
    write_cifar10(raw / "cifar10", per_class_train=2, per_class_test=1)
    write_celeba(raw / "celeba", n_val=2, n_test=2)
    write_fitzpatrick(raw / "fitzpatrick17k", per_cell=1)
    torch_home = tmp_path / "torch"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    for file_name in IMAGENET_FILES.values():
        (torch_home / "hub" / "checkpoints" / file_name).touch()

    config = pc.load_yaml_strict(repo_copy / "params.yaml")
    paper = [n for n in config["experiments"] if n not in NOT_PAPER]
    config["active"] = paper
    (repo_copy / "paper.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(
        repo_copy,
        "results/figures/all",
        "-n",
        "--configfile",
        "paper.yaml",
        env={"TORCH_HOME": str(torch_home)},
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))  # Snakemake's "Job stats" table
    exps = config["experiments"]
    assert int(counts["prepare_data"]) == len(paper), out[-3000:]
    assert int(counts["train_dense"]) == sum(len(exps[n]["seeds"]) for n in paper)
    assert int(counts["finetune"]) == sum(
        len(exps[n]["seeds"])
        * len(exps[n]["prune"]["methods"])
        * len(exps[n]["prune"]["targets"])
        * len(exps[n]["losses"])
        for n in paper
    )
    for name in paper:
        assert f"results/{name}/seed0/dense/model.pt" in out, name
