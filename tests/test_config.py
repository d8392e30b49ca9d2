"""pwprune.config: strict YAML, schema validation messages (key path + what is valid), the
label -> phase-loss vocabulary, and the schema's enums against the registries in pwprune/ (one
source of truth). That Snakemake itself refuses a bad configfile before any job (dry and real
runs) is tested through the CLI in test_reliability.py."""

from __future__ import annotations

import copy
import re

import pytest

import pwprune.config as pc
from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"


@pytest.fixture(scope="module")
def params():
    return pc.load_yaml_strict(REPO / "params.yaml")


@pytest.fixture
def cfg(params):
    return copy.deepcopy(params)


def problems(config) -> str:
    with pytest.raises(pc.ConfigError) as e:
        pc.validate(config, SCHEMA)
    return str(e.value)


# ---------------------------------------------------------------- the registries

def test_schema_enums_match_registries():
    from pwprune.data import DATASET_KINDS
    from pwprune.loss import LOSS_KINDS
    from pwprune.models import MODEL_NAMES
    from pwprune.pruning import PRUNING_METHODS

    schema = pc.load_yaml_strict(SCHEMA)
    exp = schema["$defs"]["experiment"]["properties"]
    assert exp["model"]["enum"] == list(MODEL_NAMES)
    assert exp["dataset"]["properties"]["kind"]["enum"] == list(DATASET_KINDS)
    assert exp["prune"]["properties"]["methods"]["items"]["enum"] == list(PRUNING_METHODS)
    assert exp["ablation"]["properties"]["methods"]["items"]["enum"] == list(PRUNING_METHODS)
    # every method can get its own options block and its own PW settings
    assert set(PRUNING_METHODS) - {"random"} <= set(exp["prune"]["properties"])
    assert list(exp["pw"]["properties"]["methods"]["properties"]) == list(PRUNING_METHODS)
    # the main comparison is CE vs PW; every label maps to loss kinds the loss module knows
    assert exp["losses"]["items"]["enum"] == ["ce", "pw"]
    assert set(exp["losses"]["items"]["enum"]) <= set(pc.LOSS_LABELS)
    assert set(pc.ABLATION_LABELS) == set(pc.LOSS_LABELS)
    assert {k for pair in pc.LOSS_LABELS.values() for k in pair} == set(LOSS_KINDS)
    assert set(pc.DATA_FREE_METHODS) < set(PRUNING_METHODS)


def test_wildcard_constraints_match_registries():
    """The path wildcards in common.smk accept exactly the registered names."""
    from pwprune.loss import LOSS_KINDS
    from pwprune.pruning import PRUNING_METHODS

    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    block = text[text.index("wildcard_constraints:"):]
    method = re.search(r'method="\|"\.join\((\[.*?\])\)', block)
    assert method, "method constraint not found in common.smk"
    assert eval(method.group(1)) == list(PRUNING_METHODS)  # a literal list of names
    ploss = re.search(r'ploss=r"([^"]+)"', block).group(1)
    floss = re.search(r'floss=r"([^"]+)"', block).group(1)
    assert ploss.split("|") == ["none", *LOSS_KINDS]
    assert floss.split("|") == list(LOSS_KINDS)


# ---------------------------------------------------------------- strict YAML

def test_duplicate_key_refused(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("active: [a]\nexperiments:\n  a: {model: small_cnn}\n  a: {model: vgg16}\n")
    with pytest.raises(pc.ConfigError, match=r"duplicated key 'a' at line 4 \(first at line 3\)") as e:
        pc.load_yaml_strict(f)
    assert str(f) in str(e.value)


def test_missing_and_broken_yaml(tmp_path):
    with pytest.raises(pc.ConfigError, match="does not exist"):
        pc.load_yaml_strict(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("active: [a\n")
    with pytest.raises(pc.ConfigError, match="not valid YAML"):
        pc.load_yaml_strict(bad)


def test_shipped_configs_are_valid(params):
    smoke = pc.load_yaml_strict(REPO / "tests" / "smoke.yaml")
    merged = copy.deepcopy(params)
    merged["active"] = smoke["active"]
    merged["experiments"].update(smoke["experiments"])
    for c in (copy.deepcopy(params), merged):
        pc.validate(c, SCHEMA)
        pc.check_datasets(c)


# ---------------------------------------------------------------- validate() messages

@pytest.mark.parametrize("mutate, key, what", [
    (lambda c: c["experiments"]["default"].update(learning_rate=1), "experiments.default",
     r"unknown key\(s\) 'learning_rate'; valid keys: .*ablation.*seeds"),
    (lambda c: c.update(colour="red"), r"\(top level\)", r"unknown key\(s\) 'colour'; valid keys: active, device, experiments"),
    (lambda c: c["experiments"]["default"]["train"].update(epochs="ten"), "experiments.default.train.epochs",
     r"'ten' has the wrong type; expected integer"),
    (lambda c: c["experiments"]["default"]["prune"].update(targets=[0.5, 1.0]),
     r"experiments.default.prune.targets.1", r"1.0 is out of range; must be < 1"),
    (lambda c: c["experiments"]["default"]["prune"].update(targets=[0]),
     r"experiments.default.prune.targets.0", r"0 is out of range; must be > 0"),
    (lambda c: c["experiments"]["default"]["pw"].update(min_weight=1.5), "experiments.default.pw.min_weight",
     r"1.5 is out of range; must be <= 1"),
    (lambda c: c["experiments"]["default"]["pw"].update(min_weight=-0.1), "experiments.default.pw.min_weight",
     r"-0.1 is out of range; must be >= 0"),
    (lambda c: c["experiments"]["default"]["pw"].update(gamma=-1), "experiments.default.pw.gamma",
     r"-1 is out of range; must be >= 0"),
    (lambda c: c["experiments"]["celeba_resnet18"]["pw"]["methods"]["taylor"].update(gamma=-2),
     "experiments.celeba_resnet18.pw.methods.taylor.gamma", r"-2 is out of range; must be >= 0"),
    (lambda c: c["experiments"]["default"].update(seeds=[]), "experiments.default.seeds",
     r"must list at least 1 item\(s\); got \[\]"),
    (lambda c: c["experiments"]["default"]["dataset"].update(kind="mnist"), "experiments.default.dataset.kind",
     r"'mnist' is not valid; valid values: digits, cifar10, celeba, fitzpatrick17k"),
    (lambda c: c["experiments"]["default"].update(model="resnet50"), "experiments.default.model",
     r"'resnet50' is not valid; valid values: small_cnn, resnet20, .*efficientnet_v2_m"),
    (lambda c: c["experiments"]["default"]["prune"].update(methods=["taylor", "l1"]),
     "experiments.default.prune.methods.1", r"'l1' is not valid; valid values: random, magnitude, taylor, autobot"),
    (lambda c: c["experiments"]["default"].update(losses=["ce", "focal"]), "experiments.default.losses.1",
     r"'focal' is not valid; valid values: ce, pw"),
    (lambda c: c.update(active=["default", "nope"]), "active",
     r"experiment 'nope' is not defined; defined: default, digits_memorised, default_authors, celeba_resnet18"),
    (lambda c: c.update(device="tpu"), "device", r"'tpu' does not match"),
])
def test_validate_names_key_and_valid_values(cfg, mutate, key, what):
    mutate(cfg)
    msg = problems(cfg)
    assert re.search(rf"^  {key}: {what}", msg, re.M), msg


def test_validate_lists_every_problem(cfg):
    cfg["experiments"]["default"]["pw"]["gamma"] = -1
    cfg["experiments"]["default"]["seeds"] = []
    msg = problems(cfg)
    assert "experiments.default.pw.gamma" in msg and "experiments.default.seeds" in msg


def test_validate_fills_loop_defaults(cfg):
    del cfg["experiments"]["default"]["train"]["weight_decay"]
    del cfg["experiments"]["default_authors"]  # its train loop must equal the default's
    out = pc.validate(cfg, SCHEMA)
    train = out["experiments"]["default"]["train"]
    assert train["weight_decay"] == 0.0
    assert (train["optimizer"], train["scheduler"], train["augment"], train["on_divergence"]) == \
        ("adamw", "cosine", False, "raise")
    assert out["experiments"]["default"]["finetune"]["weight_decay"] == 0.0005  # given values kept


def test_check_datasets_names_experiment_and_key(cfg):
    cfg["experiments"]["default"]["dataset"]["colour"] = "blue"
    pc.validate(cfg, SCHEMA)  # the schema leaves kind-specific keys to the dataset code
    with pytest.raises(pc.ConfigError, match=r"experiments\.default\.dataset: unknown dataset key\(s\) "
                                             r"'colour' for kind 'digits'; valid keys: kind, "):
        pc.check_datasets(cfg)


# ---------------------------------------------------------------- the loss vocabulary

@pytest.mark.parametrize("label, method, expected", [
    ("ce", "taylor", ("ce", "ce")),
    ("pw", "autobot", ("pw", "pw")),
    ("pw", "random", ("none", "pw")),
    ("ce", "magnitude", ("none", "ce")),
    ("pw_weight", "taylor", ("pw_weight", "pw_weight")),
    ("pw_correct", "taylor", ("pw_correct", "pw_correct")),
    ("pw_prune_only", "taylor", ("pw", "ce")),
    ("pw_prune_only", "magnitude", ("none", "ce")),
    ("pw_finetune_only", "autobot", ("ce", "pw")),
])
def test_phase_losses(label, method, expected):
    assert pc.phase_losses(label, method) == expected


def test_phase_losses_unknown_label():
    with pytest.raises(pc.ConfigError, match=r"unknown loss label 'focal'; valid: ce, pw, pw_weight"):
        pc.phase_losses("focal", "taylor")


def test_pw_settings_override_per_method(params):
    exp = params["experiments"]["celeba_vgg16"]
    assert pc.pw_settings(exp, "taylor") == {"min_weight": 0.9, "gamma": 5.0}
    assert pc.pw_settings(exp, "random") == {"min_weight": 0.75, "gamma": 3.0}
    partial = {"pw": {"min_weight": 0.5, "gamma": 1.0, "methods": {"autobot": {"gamma": 4.0}}}}
    assert pc.pw_settings(partial, "autobot") == {"min_weight": 0.5, "gamma": 4.0}
    assert pc.pw_settings(partial, "taylor") == {"min_weight": 0.5, "gamma": 1.0}


def test_target_str_round_trips():
    for t in (0.5, 0.9375, 0.96875, 0.9961):
        assert float(pc.target_str(t)) == t
    assert pc.target_str(0.5) == "0.5" and pc.target_str(1 / 2) == "0.5"
