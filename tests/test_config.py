"""pwprune.config: strict YAML, schema validation messages (key path + what is valid), the
label -> phase-loss vocabulary, the schema's enums built from the registries of pwprune.names (one
source of truth), the one-pass default filling, and the path wildcards that accept exactly the
registered names (a dry run). That Snakemake itself refuses a bad configfile before any job (dry and real
runs) is tested through the CLI in test_reliability.py."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

import pwprune.config as pc
from helpers import REPO, reversed_keys
from pwprune import names

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


# ---------------------------------------------------------------- the registries (pwprune.names)


def _placeholders(node, found=None):
    """(key, registry name) of every placeholder in a raw schema."""
    found = [] if found is None else found
    if isinstance(node, list):
        for item in node:
            _placeholders(item, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in pc.PLACEHOLDERS:
                found.append((key, value["names"] if key == "x-properties" else value))
            _placeholders(value, found)
    return found


def test_schema_names_registries_instead_of_listing_them():
    raw = pc.load_yaml_strict(SCHEMA)
    used = _placeholders(raw)
    assert used and all(isinstance(getattr(names, n, None), (tuple, dict, float)) for _, n in used), used
    # the raw schema spells no list of a registry's names
    registries = {tuple(v) for k, v in vars(names).items() if k.isupper() and isinstance(v, (tuple, dict))}

    def enums(node):
        if isinstance(node, dict):
            if "enum" in node:
                yield tuple(node["enum"])
            for v in node.values():
                yield from enums(v)
        elif isinstance(node, list):
            for v in node:
                yield from enums(v)

    assert not registries & set(enums(raw))


def test_schema_enums_equal_the_registries_after_loading():
    schema = pc.load_schema(SCHEMA)
    assert not _placeholders(schema)
    exp = schema["$defs"]["experiment"]["properties"]
    prune = exp["prune"]["properties"]
    loop = schema["$defs"]["loop"]["properties"]
    assert exp["model"]["enum"] == list(names.MODEL_NAMES)
    assert exp["dataset"]["properties"]["kind"]["enum"] == list(names.DATASET_KINDS)
    assert exp["pretrained"]["enum"] == list(names.PRETRAINED_CHOICES)
    assert prune["methods"]["items"]["enum"] == list(names.METHODS)
    assert exp["ablation"]["properties"]["methods"]["items"]["enum"] == list(names.METHODS)
    assert prune["tolerance"]["default"] == names.PRUNE_TOLERANCE
    assert prune["layers"]["enum"] == list(names.LAYER_SCOPES)
    assert prune["taylor"]["properties"]["schedule"]["enum"] == list(names.TAYLOR_SCHEDULES)
    assert (loop["optimizer"]["enum"], loop["scheduler"]["enum"], loop["on_divergence"]["enum"]) == (
        list(names.OPTIMIZERS),
        list(names.SCHEDULERS),
        list(names.ON_DIVERGENCE),
    )
    # every method can get its own PW settings; every method with options has its block
    assert list(exp["pw"]["properties"]["methods"]["properties"]) == list(names.METHODS)
    assert set(names.METHODS) - {"random"} <= set(prune)
    # the main comparison is CE vs PW; an experiment may add the fair-pruning baselines' losses
    assert exp["losses"]["items"]["enum"] == list(names.EXPERIMENT_LOSS_LABELS)
    assert names.EXPERIMENT_LOSS_LABELS == (*names.MAIN_LABELS, *names.BASELINE_LABELS)


def test_registries_are_consistent():
    assert set(names.MAIN_LABELS) <= set(names.LOSS_LABELS)
    assert set(names.ABLATION_LABELS) == set(names.LOSS_LABELS)
    assert names.ABLATION_ONLY_LABELS == tuple(l for l in names.LOSS_LABELS if l not in names.MAIN_LABELS)
    assert {k for pair in names.LOSS_LABELS.values() for k in pair} == set(names.LOSS_KINDS)
    assert names.PRUNE_LOSSES == ("none", *names.LOSS_KINDS)
    assert set(names.DATA_FREE_METHODS) < set(names.METHODS)
    assert set(names.MAIN_FIGURES) < set(names.FIGURES) and names.ABLATION_FIGURE in names.FIGURES
    # config re-exports the vocabulary the workflow's rules use
    assert (pc.LOSS_LABELS, pc.ABLATION_LABELS, pc.DATA_FREE_METHODS) == (
        names.LOSS_LABELS,
        names.ABLATION_LABELS,
        names.DATA_FREE_METHODS,
    )


def test_code_checks_against_the_registries():
    """The modules that check these names use the registry (or, where they still spell it, the
    same names in the same order)."""
    from pwprune import data, loss, models, train
    from pwprune.pruning import PRUNING_METHODS, autobot, graph, importance, target

    assert loss.LOSS_KINDS is names.LOSS_KINDS and tuple(loss.SWITCHES) == names.LOSS_KINDS
    assert models.MODEL_NAMES is names.MODEL_NAMES
    assert data.DATASET_KINDS is names.DATASET_KINDS
    assert (train.OPTIMIZERS, train.SCHEDULERS, train.ON_DIVERGENCE) == (
        names.OPTIMIZERS,
        names.SCHEDULERS,
        names.ON_DIVERGENCE,
    )
    assert tuple(PRUNING_METHODS) == names.METHODS
    assert tuple(target.OPTIONS) == names.METHODS
    assert (graph.LAYER_SCOPES, target.TAYLOR_SCHEDULES, target.RESTORE_WEIGHTS, importance.TAYLOR_SITES) == (
        names.LAYER_SCOPES,
        names.TAYLOR_SCHEDULES,
        names.RESTORE_WEIGHTS,
        names.TAYLOR_SITES,
    )
    assert (autobot.FLOP_LOSSES, autobot.MODES, autobot.KEEPS, autobot.PLAIN_TARGETS, autobot.SEARCHES) == (
        names.AUTOBOT_FLOP_LOSSES,
        names.AUTOBOT_MODES,
        names.AUTOBOT_KEEPS,
        names.AUTOBOT_PLAIN_TARGETS,
        names.AUTOBOT_SEARCHES,
    )


@pytest.mark.parametrize(
    "placeholder",
    [
        {"x-enum": "NO_SUCH_REGISTRY"},
        {"x-default": "NO_SUCH_REGISTRY"},
        {"type": "object", "x-properties": {"names": "NO_SUCH_REGISTRY", "schema": {"type": "number"}}},
        {"x-enum": "methods"},  # registries are the upper-case names of pwprune.names
    ],
)
def test_a_placeholder_naming_no_registry_is_refused(tmp_path, cfg, placeholder):
    schema = pc.load_yaml_strict(SCHEMA)
    schema["$defs"]["experiment"]["properties"]["colour"] = placeholder
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema))
    bad = next(iter(v for k, v in placeholder.items() if k.startswith("x-")))
    bad = bad["names"] if isinstance(bad, dict) else bad
    with pytest.raises(
        pc.ConfigError,
        match=rf"schema placeholder x-\w+: '{bad}' names no registry in "
        r"pwprune.names; defined: METHODS, ",
    ):
        pc.validate(cfg, path)


@pytest.fixture(scope="module")
def dry_copy(tmp_path_factory):
    from helpers import copy_repo

    return copy_repo(tmp_path_factory.mktemp("names") / "repo")


def _dry(root, *targets):
    from helpers import snakemake

    return snakemake(root, *targets, "-n", "--cores", "1", "--configfile", "tests/smoke.yaml", check=False)


@pytest.mark.slow
def test_path_wildcards_accept_exactly_the_registered_names(dry_copy):
    """common.smk's wildcard constraints come from pwprune.names: a dry run builds a job for
    every registered method and loss kind, and has no rule for a name outside them."""
    tuned = "results/smoke/seed0/finetuned/{m}-{p}-{f}/0.5/model.pt"
    good = [
        tuned.format(m=m, p=pc.phase_losses(label, m)[0], f=pc.phase_losses(label, m)[1])
        for m in names.METHODS
        for label in names.LOSS_LABELS
    ]
    proc = _dry(dry_copy, *good)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for bad in (tuned.format(m="l1norm", p="none", f="ce"), tuned.format(m="taylor", p="ce", f="focal")):
        proc = _dry(dry_copy, bad)
        assert proc.returncode != 0 and "MissingRuleException" in proc.stdout + proc.stderr, bad


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


@pytest.mark.parametrize(
    "mutate, key, what",
    [
        (
            lambda c: c["experiments"]["default"].update(learning_rate=1),
            "experiments.default",
            r"unknown key\(s\) 'learning_rate'; valid keys: .*ablation.*seeds",
        ),
        (
            lambda c: c.update(colour="red"),
            r"\(top level\)",
            r"unknown key\(s\) 'colour'; valid keys: active, device, experiments",
        ),
        (
            lambda c: c["experiments"]["default"]["train"].update(epochs="ten"),
            "experiments.default.train.epochs",
            r"'ten' has the wrong type; expected integer",
        ),
        (
            lambda c: c["experiments"]["default"]["prune"].update(targets=[0.5, 1.0]),
            r"experiments.default.prune.targets.1",
            r"1.0 is out of range; must be < 1",
        ),
        (
            lambda c: c["experiments"]["default"]["prune"].update(targets=[0]),
            r"experiments.default.prune.targets.0",
            r"0 is out of range; must be > 0",
        ),
        (
            lambda c: c["experiments"]["default"]["pw"].update(min_weight=1.5),
            "experiments.default.pw.min_weight",
            r"1.5 is out of range; must be <= 1",
        ),
        (
            lambda c: c["experiments"]["default"]["pw"].update(min_weight=-0.1),
            "experiments.default.pw.min_weight",
            r"-0.1 is out of range; must be >= 0",
        ),
        (
            lambda c: c["experiments"]["default"]["pw"].update(gamma=-1),
            "experiments.default.pw.gamma",
            r"-1 is out of range; must be >= 0",
        ),
        (
            lambda c: c["experiments"]["celeba_resnet18"]["pw"]["methods"]["taylor"].update(gamma=-2),
            "experiments.celeba_resnet18.pw.methods.taylor.gamma",
            r"-2 is out of range; must be >= 0",
        ),
        (
            lambda c: c["experiments"]["default"].update(seeds=[]),
            "experiments.default.seeds",
            r"must list at least 1 item\(s\); got \[\]",
        ),
        (
            lambda c: c["experiments"]["default"]["dataset"].update(kind="mnist"),
            "experiments.default.dataset.kind",
            r"'mnist' is not valid; valid values: digits, cifar10, celeba, fitzpatrick17k",
        ),
        (
            lambda c: c["experiments"]["default"].update(model="resnet99"),
            "experiments.default.model",
            r"'resnet99' is not valid; valid values: small_cnn, resnet20, .*convnext_tiny, .*resnet50, ",
        ),
        (
            lambda c: c["experiments"]["default"]["prune"].update(methods=["taylor", "l1"]),
            "experiments.default.prune.methods.1",
            r"'l1' is not valid; valid values: random, magnitude, taylor, autobot",
        ),
        (
            lambda c: c["experiments"]["default"].update(losses=["ce", "focal"]),
            "experiments.default.losses.1",
            r"'focal' is not valid; valid values: ce, pw",
        ),
        (
            lambda c: c.update(active=["default", "nope"]),
            "active",
            r"experiment 'nope' is not defined; defined: default, digits_memorised, default_authors, default_1epoch, "
            r"baselines, celeba_resnet18",
        ),
        (lambda c: c.update(device="tpu"), "device", r"'tpu' does not match"),
    ],
)
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
    assert (train["optimizer"], train["scheduler"], train["augment"], train["on_divergence"]) == (
        "adamw",
        "cosine",
        False,
        "raise",
    )
    assert out["experiments"]["default"]["finetune"]["weight_decay"] == 0.0005  # given values kept


def test_validate_fills_every_schema_default_in_one_pass(cfg):
    exp = cfg["experiments"]["default"]
    for key in ("tolerance", "layers"):
        exp["prune"].pop(key, None)
    exp.pop("pretrained", None)
    exp.pop("evaluate", None)
    exp["prune"].pop("taylor", None)
    exp["finetune"].pop("optimizer", None)
    out = pc.validate(cfg, SCHEMA)["experiments"]["default"]
    assert (out["prune"]["tolerance"], out["prune"]["layers"], out["pretrained"]) == (
        names.PRUNE_TOLERANCE,
        "all",
        "none",
    )
    assert out["finetune"]["optimizer"] == "adamw"
    # objects without a default stay absent: nothing the config did not say is invented
    assert "evaluate" not in out and "taylor" not in out["prune"]
    # a variant inherits from its base before the defaults are filled
    assert cfg["experiments"]["default_authors"]["prune"]["tolerance"] == names.PRUNE_TOLERANCE


def test_fill_defaults_follows_refs_maps_and_lists():
    schema = {
        "$defs": {
            "leaf": {"type": "object", "properties": {"a": {"default": 1}, "b": {"type": "object", "default": {}}}}
        },
        "type": "object",
        "properties": {
            "one": {"$ref": "#/$defs/leaf"},
            "many": {"type": "array", "items": {"$ref": "#/$defs/leaf"}},
            "absent": {"$ref": "#/$defs/leaf"},
        },
        "additionalProperties": {"$ref": "#/$defs/leaf"},
    }
    got = pc.fill_defaults({"one": {"a": 5}, "many": [{}, {"b": {"x": 1}}], "other": {}}, schema)
    assert got == {
        "one": {"a": 5, "b": {}},
        "many": [{"a": 1, "b": {}}, {"a": 1, "b": {"x": 1}}],
        "other": {"a": 1, "b": {}},
    }


def test_check_datasets_names_experiment_and_key(cfg):
    cfg["experiments"]["default"]["dataset"]["colour"] = "blue"
    pc.validate(cfg, SCHEMA)  # the schema leaves kind-specific keys to the dataset code
    with pytest.raises(
        pc.ConfigError,
        match=r"experiments\.default\.dataset: unknown dataset key\(s\) "
        r"'colour' for kind 'digits'; valid keys: kind, ",
    ):
        pc.check_datasets(cfg)


# ---------------------------------------------------------------- the loss vocabulary


@pytest.mark.parametrize(
    "label, method, expected",
    [
        ("ce", "taylor", ("ce", "ce")),
        ("pw", "autobot", ("pw", "pw")),
        ("pw", "random", ("none", "pw")),
        ("ce", "magnitude", ("none", "ce")),
        ("pw_weight", "taylor", ("pw_weight", "pw_weight")),
        ("pw_correct", "taylor", ("pw_correct", "pw_correct")),
        ("pw_prune_only", "taylor", ("pw", "ce")),
        ("pw_prune_only", "magnitude", ("none", "ce")),
        ("pw_finetune_only", "autobot", ("ce", "pw")),
    ],
)
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


def test_conda_env_pins_are_pyprojects():
    """workflow/envs/pwprune.yaml (every rule's `conda:`) installs exactly pyproject.toml's pins:
    one set of versions, whichever way the jobs' software is deployed."""
    import tomllib

    root = REPO
    env = yaml.safe_load((root / "workflow" / "envs" / "pwprune.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert pip == project["dependencies"]
    assert "python=3.11" in env["dependencies"] and project["requires-python"] == ">=3.11,<3.12"


# ---------------------------------------------------------------- the canonical form


def _key_orders(node, path="", out=None):
    """path -> key list of every mapping in node."""
    out = {} if out is None else out
    if isinstance(node, dict):
        out[path] = list(node)
        for k, v in node.items():
            _key_orders(v, f"{path}.{k}", out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _key_orders(v, f"{path}[{i}]", out)
    return out


def test_validated_config_is_canonical(cfg):
    """Keys sorted at every depth, whatever order the file has; an int where the schema says
    number becomes a float, integers and booleans stay; lists keep their order."""
    exp = cfg["experiments"]["default"]
    exp["pw"] = {"gamma": 1, "min_weight": 0.3, "methods": {"taylor": {"min_weight": 0.8, "gamma": 0}}}
    exp["prune"]["targets"] = [0.875, 0.75]
    exp["train"] = dict(reversed(list(exp["train"].items())))
    cfg["experiments"] = dict(reversed(list(cfg["experiments"].items())))
    pc.validate(cfg, SCHEMA)
    orders = _key_orders(cfg)
    unsorted = {p: keys for p, keys in orders.items() if keys != sorted(keys, key=str)}
    assert not unsorted, unsorted
    exp = cfg["experiments"]["default"]
    assert repr(exp["pw"]["gamma"]) == "1.0" and repr(exp["pw"]["methods"]["taylor"]["gamma"]) == "0.0"
    assert exp["prune"]["targets"] == [0.875, 0.75]  # a list's order is kept
    assert type(exp["train"]["epochs"]) is int and type(exp["seeds"][0]) is int  # schema: integer
    assert exp["deterministic"] is True and type(exp["train"]["augment"]) is bool


def test_two_orders_of_one_config_give_one_repr(params):
    """What Snakemake compares of a rule's params is their repr."""
    a, b = copy.deepcopy(params), reversed_keys(params)
    assert repr(a) != repr(b)
    assert repr(pc.validate(a, SCHEMA)) == repr(pc.validate(b, SCHEMA))


# ---------------------------------------------------------------- CUDA: deterministic kernels, GPU requests


def _vgg(cfg, model="vgg16", **changes):
    """cfg with an experiment `gpu_vgg` training `model` on CIFAR-10-sized digits (deterministic by
    default, as every experiment)."""
    exp = copy.deepcopy(cfg["experiments"]["default"])
    exp.update(model=model, description="a VGG on a GPU", **changes)
    exp["dataset"] = {**exp["dataset"], "image_size": 32}
    cfg["experiments"]["gpu_vgg"] = exp
    return cfg


@pytest.mark.parametrize("model", ["vgg16", "vgg11_bn", "alexnet"])
@pytest.mark.parametrize("device, cuda_available", [("cuda", False), ("cuda:1", False), ("auto", True)])
def test_a_pool_without_deterministic_cuda_kernel_is_refused_naming_key_model_and_fix(
    cfg, model, device, cuda_available
):
    """VGG pools to 7x7 and AlexNet to 6x6 (adaptive, not global): their CUDA backward has no
    deterministic kernel, so `deterministic: true` would stop the first training step on a GPU.
    Refused at validation, before any data is prepared, wherever the device can be CUDA."""
    cfg["device"] = device
    with pytest.raises(pc.ConfigError) as e:
        pc.validate(_vgg(cfg, model), SCHEMA, cuda_available=cuda_available)
    message = str(e.value)
    assert f"experiments.gpu_vgg.deterministic: true, but model {model!r}" in message
    assert "AdaptiveAvgPool2d((" in message and "no deterministic kernel" in message
    assert "Set `deterministic: false` in experiments.gpu_vgg" in message and "`device: cpu`" in message
    assert f"device is {device!r}" in message


@pytest.mark.parametrize(
    "device, cuda_available, changes",
    [
        ("cpu", True, {}),  # the CPU has deterministic kernels for every pool
        ("auto", False, {}),  # auto on a machine without CUDA computes on the CPU
        ("cuda", True, {"deterministic": False}),  # allowed, as celeba_vgg16 does
    ],
)
def test_a_vgg_is_valid_where_it_cannot_meet_a_cuda_backward_or_may(cfg, device, cuda_available, changes):
    cfg["device"] = device
    pc.validate(_vgg(cfg, **changes), SCHEMA, cuda_available=cuda_available)


def test_models_with_global_pools_are_not_flagged(cfg):
    cfg["device"] = "cuda"
    for model in ("resnet18", "efficientnet_v2_s", "small_cnn", "resnet56_a", "googlenet", "squeezenet1_0"):
        pc.validate(_vgg(copy.deepcopy(cfg), model), SCHEMA)
    assert set(names.CUDA_NONDETERMINISTIC_MODELS) == {n for n in names.MODEL_NAMES if n.startswith(("vgg", "alexnet"))}


def test_shipped_configs_validate_where_cuda_is_present(params):
    """On a GPU machine params.yaml (device: auto) still validates: its one VGG experiment,
    celeba_vgg16, sets deterministic: false."""
    assert params["experiments"]["celeba_vgg16"]["deterministic"] is False
    for device in ("auto", "cuda"):
        pc.validate({**copy.deepcopy(params), "device": device}, SCHEMA, cuda_available=True)


@pytest.mark.parametrize(
    "device, cuda_available, gpus",
    [("cuda", False, 1), ("cuda:2", True, 1), ("auto", True, 1), ("auto", False, 0), ("cpu", True, 0)],
)
def test_gpu_count_asks_for_a_gpu_wherever_jobs_compute_on_cuda(device, cuda_available, gpus):
    """The `gpu` resource of a compute job (common.smk gpus()): `auto` asks for one when CUDA is
    present, so the local profile's `gpu: 1` and the Slurm executor see every GPU job."""
    assert pc.gpu_count(device, cuda_available) == gpus
    assert pc.cuda_possible(device, cuda_available) is bool(gpus)


def _fake_torch(tmp_path, monkeypatch, version_py, nodes=(), env=None):
    """cuda_present() on a stand-in installation: torch/version.py with the given text, the given
    /dev entries, and CUDA_VISIBLE_DEVICES set (or unset: None)."""
    import fnmatch
    import glob
    import importlib.util
    import os
    from types import SimpleNamespace

    (tmp_path / "torch").mkdir(exist_ok=True)
    (tmp_path / "torch" / "version.py").write_text(version_py)
    spec = SimpleNamespace(origin=str(tmp_path / "torch" / "__init__.py"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec if name == "torch" else None)
    monkeypatch.setattr(glob, "glob", lambda pattern: [n for n in nodes if fnmatch.fnmatch(n, pattern)])
    monkeypatch.setattr(os.path, "exists", lambda p: p in nodes)
    if env is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    return pc.cuda_present.__wrapped__()


CUDA_BUILD = "__version__ = '2.14.1+cu130'\ncuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n"
CPU_BUILD = "__version__ = '2.14.1+cpu'\ncuda: Optional[str] = None\nhip: Optional[str] = None\n"
ROCM_BUILD = "__version__ = '2.14.1+rocm7.0'\ncuda: Optional[str] = None\nhip: Optional[str] = '7.0.1'\n"


@pytest.mark.parametrize(
    "version_py, nodes, env, present",
    [
        (CUDA_BUILD, ("/dev/nvidia0", "/dev/nvidiactl"), None, True),
        (CUDA_BUILD, ("/dev/nvidia0",), "0,1", True),
        (CUDA_BUILD, ("/dev/nvidia0",), "", False),  # CUDA_VISIBLE_DEVICES hides every device
        (CUDA_BUILD, ("/dev/nvidia0",), "-1", False),
        (CUDA_BUILD, ("/dev/nvidiactl",), None, False),  # a driver node, no GPU
        (CUDA_BUILD, (), None, False),  # a CUDA build on a machine without a GPU (this one)
        (CPU_BUILD, ("/dev/nvidia0",), None, False),  # a GPU, but a CPU-only torch
        (ROCM_BUILD, ("/dev/kfd",), None, True),
        (ROCM_BUILD, (), None, False),
    ],
    ids=[
        "gpu",
        "visible",
        "hidden-empty",
        "hidden-minus-1",
        "driver-only",
        "no-gpu",
        "cpu-build",
        "rocm",
        "rocm-no-gpu",
    ],
)
def test_cuda_present_answers_without_torch(tmp_path, monkeypatch, version_py, nodes, env, present):
    assert _fake_torch(tmp_path, monkeypatch, version_py, nodes, env) is present


def test_cuda_present_agrees_with_torch_here():
    import torch

    assert pc.cuda_present() is torch.cuda.is_available()


@pytest.mark.slow
def test_the_start_up_checks_import_no_torch_and_cost_milliseconds():
    """What the Snakefile runs at start-up (validate, with its CUDA checks) stays torch-free: on a
    GPU machine too, where `device: auto` asks cuda_present() and every experiment's model is
    looked up (names.CUDA_NONDETERMINISTIC_MODELS), nothing builds a model or imports torch."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "import pwprune.config as pc\n"
        f"c = pc.load_yaml_strict({str(REPO / 'params.yaml')!r})\n"
        "t = time.perf_counter()\n"
        f"pc.validate(c, {str(SCHEMA)!r}, cuda_available=True)\n"
        "pc.cuda_present()\n"
        "print(time.perf_counter() - t)\n"
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules, 'heavy import'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("threads", [0, 2])
def test_latency_threads_is_a_positive_integer(cfg, threads):
    """evaluate.latency_threads: the thread count latency is measured with (1 when unset)."""
    cfg["experiments"]["default"].setdefault("evaluate", {})["latency_threads"] = threads
    if threads < 1:
        assert "experiments.default.evaluate.latency_threads: 0 is out of range; must be >= 1" in problems(cfg)
    else:
        assert pc.validate(cfg, SCHEMA)["experiments"]["default"]["evaluate"]["latency_threads"] == 2
