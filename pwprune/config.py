"""params.yaml: strict loading, schema validation with readable messages, the schema's
defaults filled in one pass, and the small vocabulary that maps a comparison label (ce, pw,
ablations) to the loss used in each phase. The names themselves live in pwprune.names (the
schema's enums are built from them; LOSS_LABELS, ABLATION_LABELS and DATA_FREE_METHODS are
re-exported here for the workflow's rules).

Torch-free on purpose: the Snakefile imports this at start-up, and a dry run must stay fast.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from pwprune import names
from pwprune.names import ABLATION_LABELS, DATA_FREE_METHODS, LOSS_LABELS  # noqa: F401 (re-exported)


class ConfigError(ValueError):
    pass


def phase_losses(label: str, method: str) -> tuple[str, str]:
    """(prune_loss, finetune_loss) for a comparison label and pruning method."""
    labels = {**LOSS_LABELS, **names.BASELINE_LABELS}
    if label not in labels:
        raise ConfigError(f"unknown loss label {label!r}; valid: {', '.join(labels)}")
    prune, finetune = labels[label]
    return ("none" if method in DATA_FREE_METHODS else prune), finetune


def pw_settings(experiment: dict, method: str) -> dict:
    """min_weight/gamma of the PW loss for one pruning method (the paper tunes them per method)."""
    pw = experiment["pw"]
    override = pw.get("methods", {}).get(method, {})
    return {"min_weight": override.get("min_weight", pw["min_weight"]), "gamma": override.get("gamma", pw["gamma"])}


def ceag_settings(experiment: dict) -> dict:
    """epsilon/dual_lr of CEAG fine-tuning (the experiment's `ceag` section; names' defaults)."""
    ceag = experiment.get("ceag") or {}
    return {"epsilon": ceag.get("epsilon", names.CEAG_EPSILON), "dual_lr": ceag.get("dual_lr", names.CEAG_DUAL_LR)}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated mapping keys (plain YAML keeps the last one
    silently, which would hide a duplicated experiment name)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicated key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key] + 1}) in {key_node.start_mark.name}; "
                "each key (e.g. an experiment name) may appear once"
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_strict(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path) as f:
        try:
            return yaml.load(f, Loader=_StrictLoader) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None


def _key_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _describe(error) -> str:
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        return (
            f"unknown key(s) {', '.join(map(repr, extra))}; valid keys: {', '.join(allowed) if allowed else '(none)'}"
        )
    if v == "enum":
        path = list(error.absolute_path)
        if path[-1:] == ["model"] and isinstance(error.instance, str) and error.instance in names.REFUSED_MODELS:
            return (
                f"{error.instance!r} is refused: {names.REFUSED_MODELS[error.instance]}; "
                f"valid values: {', '.join(map(str, error.validator_value))}"
            )
        return f"{error.instance!r} is not valid; valid values: {', '.join(map(str, error.validator_value))}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"{error.instance!r} is out of range; must be {words[v]} {error.validator_value}"
    if v == "minItems":
        return f"must list at least {error.validator_value} item(s); got {error.instance!r}"
    if v == "type":
        return f"{error.instance!r} has the wrong type; expected {error.validator_value}"
    if v == "required":
        return error.message
    return error.message


# Schema placeholders: the schema names a registry of pwprune.names instead of listing it.
#   x-enum: NAME                          -> enum: list(names.NAME)
#   x-default: NAME                       -> default: names.NAME
#   x-properties: {names: NAME, schema: S} -> properties: {n: S for n in names.NAME}
PLACEHOLDERS = ("x-enum", "x-default", "x-properties")


def _registry(key: str, name) -> object:
    value = getattr(names, name, None) if isinstance(name, str) and name.isupper() else None
    if value is None:
        known = ", ".join(n for n in vars(names) if n.isupper())
        raise ConfigError(f"schema placeholder {key}: {name!r} names no registry in pwprune.names; defined: {known}")
    return value


def resolve_placeholders(node):
    """The schema with every placeholder (PLACEHOLDERS) replaced by the registry it names, in place;
    a placeholder naming no registry raises ConfigError."""
    if isinstance(node, list):
        for item in node:
            resolve_placeholders(item)
    elif isinstance(node, dict):
        if "x-enum" in node:
            node["enum"] = list(_registry("x-enum", node.pop("x-enum")))
        if "x-default" in node:
            node["default"] = copy.deepcopy(_registry("x-default", node.pop("x-default")))
        if "x-properties" in node:
            spec = node.pop("x-properties")
            node["properties"] = {n: copy.deepcopy(spec["schema"]) for n in _registry("x-properties", spec["names"])}
        for value in node.values():
            resolve_placeholders(value)
    return node


def load_schema(schema_path) -> dict:
    """The JSON schema with its enums, defaults and per-name properties filled from pwprune.names."""
    return resolve_placeholders(load_yaml_strict(schema_path))


def _deref(spec: dict, root: dict) -> dict:
    while isinstance(spec, dict) and "$ref" in spec:
        ref = spec["$ref"]
        if not ref.startswith("#/"):
            raise ConfigError(f"schema: only local $ref are supported, got {ref!r}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        spec = target
    return spec


def fill_defaults(instance, schema: dict, root: dict | None = None):
    """Every schema `default` filled into `instance` (in place) in one recursive pass: a key that
    is absent gets its default; present mappings and list items are descended into (through
    properties, additionalProperties, items and local $refs). Absent objects without a default
    stay absent. Returns `instance`."""
    root = schema if root is None else root
    schema = _deref(schema, root)
    if not isinstance(schema, dict):
        return instance
    if isinstance(instance, dict):
        props = schema.get("properties") or {}
        for key, spec in props.items():
            spec = _deref(spec, root)
            if key not in instance and isinstance(spec, dict) and "default" in spec:
                instance[key] = copy.deepcopy(spec["default"])
            if key in instance:
                fill_defaults(instance[key], spec, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in props:
                    fill_defaults(value, extra, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            fill_defaults(item, schema["items"], root)
    return instance


def _types(spec: dict, root: dict) -> set:
    """The JSON types a schema node allows (its `type`, or its anyOf/oneOf branches')."""
    spec = _deref(spec, root)
    if not isinstance(spec, dict):
        return set()
    t = spec.get("type")
    types = set(t) if isinstance(t, list) else ({t} if t else set())
    for branch in (spec.get("anyOf") or []) + (spec.get("oneOf") or []):
        types |= _types(branch, root)
    return types


def canonicalize(instance, schema: dict, root: dict | None = None):
    """The configuration in one canonical form, in place, so that a rule's params (whose repr is
    what Snakemake compares) change only when a value does: every mapping's keys sorted, at every
    depth, and an integer where the schema says `number` written as a float (`gamma: 1` is
    `gamma: 1.0`). Writing the same params.yaml with its keys in another order then reruns
    nothing. Lists keep their order (it can matter). Returns `instance`."""
    root = schema if root is None else root
    schema = _deref(schema, root) if isinstance(schema, dict) else {}
    if isinstance(instance, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(instance):
            spec = props.get(key, extra if isinstance(extra, dict) else {})
            value = instance[key]
            if _is_plain_int(value) and _wants_float(spec, root):
                instance[key] = float(value)
            else:
                canonicalize(value, spec, root)
        items = sorted(instance.items(), key=lambda kv: str(kv[0]))
        instance.clear()
        instance.update(items)
    elif isinstance(instance, list):
        spec = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        for i, value in enumerate(instance):
            if _is_plain_int(value) and _wants_float(spec, root):
                instance[i] = float(value)
            else:
                canonicalize(value, spec, root)
    return instance


def _is_plain_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wants_float(spec, root) -> bool:
    types = _types(spec, root) if isinstance(spec, dict) else set()
    return "number" in types and "integer" not in types


def validate(config: dict, schema_path, cuda_available: bool | None = None) -> dict:
    """Validate against the JSON schema plus the cross-key rules a schema cannot say, then fill
    every schema default into `config` (so downstream code can index keys directly), and put it in
    its canonical form (canonicalize: sorted keys, schema numbers as floats).
    Raises ConfigError listing every problem as `key.path: what is wrong, what is valid`.
    cuda_available: whether `device: auto` means CUDA here (cuda_deterministic_problems); None asks
    cuda_present(), only when an experiment's answer depends on it."""
    import jsonschema

    schema = load_schema(schema_path)
    _inherit_from_bases(config.get("experiments"))
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{_key_path(e)}: {_describe(e)}"
        for e in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
        if not _timm_model(e)  # checked against the installed timm instead (_cross_key_problems)
    ]
    experiments = config.get("experiments") or {}
    for name in config.get("active") or []:
        if isinstance(experiments, dict) and name not in experiments:
            problems.append(f"active: experiment {name!r} is not defined; defined: {', '.join(experiments)}")
    if isinstance(experiments, dict):
        for name, exp in experiments.items():
            if isinstance(exp, dict):
                problems += _cross_key_problems(name, exp)
                if exp.get("precision") == "fp16" and config.get("device") == "cpu":
                    problems.append(
                        f"experiments.{name}.precision: 'fp16' needs a CUDA device, and device is 'cpu'; "
                        "use 'bf16' for mixed precision on a CPU, or 'fp32'"
                    )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    # Fill the schema's defaults so every consumer sees the same values.
    fill_defaults(config, schema)
    # a variant shares its base's dense models: compared once both have their defaults filled
    problems = [p for name, exp in experiments.items() for p in _variant_problems(name, exp, experiments)]
    problems += cuda_deterministic_problems(config, cuda_available)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    # one form for one value: a rule's params change only when a value does
    canonicalize(config, schema)
    return config


def _timm_model(error) -> bool:
    """A `model: timm/<name>` that the schema's enum of torchvision and own names does not list."""
    return (
        error.validator == "enum"
        and list(error.absolute_path)[-1:] == ["model"]
        and isinstance(error.instance, str)
        and error.instance.startswith(names.TIMM_PREFIX)
    )


def _model_problems(name: str, exp: dict) -> list[str]:
    """A timm model (`timm/<name>`): in the installed timm's registry, and not refused for what it
    holds (pwprune.models.refusal), found by building it on the meta device (no weights, no
    forward pass); model_options only where the builder takes them."""
    model, options = exp.get("model"), exp.get("model_options")
    if not isinstance(model, str) or not (model.startswith(names.TIMM_PREFIX) or options):
        return []
    from pwprune import models

    try:
        models.check_config_model(model, options or {})
    except (ValueError, TypeError) as e:
        key = "model_options" if options and "model_options" in str(e) else "model"
        return [f"experiments.{name}.{key}: {e}"]
    return []


def _cross_key_problems(name: str, exp: dict) -> list[str]:
    """What the schema cannot say about one experiment: ImageNet weights exist only for the
    torchvision models; a multistep schedule needs strictly increasing milestones."""
    from pwprune.weights import IMAGENET_FILES, imagenet_models

    problems = []
    if isinstance(exp.get("evaluate"), dict) and "batch_size" in exp["evaluate"]:
        problems.append(
            f"experiments.{name}.evaluate.batch_size: moved to experiments.{name}.inference.batch_size "
            "(the batch at which the training, pruning and fine-tuning jobs compute each checkpoint's "
            "outputs); `evaluate:` now holds only the latency settings (latency_batch, latency_repeats)"
        )
    problems += _model_problems(name, exp)
    timm = isinstance(exp.get("model"), str) and exp["model"].startswith(names.TIMM_PREFIX)
    if exp.get("pretrained") == "imagenet" and exp.get("model") not in IMAGENET_FILES and not timm:
        problems.append(
            f"experiments.{name}.pretrained: 'imagenet' is not available for model "
            f"{exp.get('model')!r}; valid models: {imagenet_models()} "
            "(or pretrained: none)"
        )
    if exp.get("pretrained_file") is not None and not (timm and exp.get("pretrained") == "imagenet"):
        problems.append(
            f"experiments.{name}.pretrained_file: names a timm model's weights file, so it needs a timm/<name> "
            f"model with pretrained: imagenet; got model {exp.get('model')!r}, pretrained {exp.get('pretrained')!r}"
        )
    for loop in ("train", "finetune"):
        cfg = exp.get(loop)
        if not isinstance(cfg, dict):
            continue
        milestones = cfg.get("milestones")
        if cfg.get("scheduler") == "multistep":
            if milestones is None:
                problems.append(
                    f"experiments.{name}.{loop}.milestones: required with scheduler: "
                    "multistep (epoch counts after which the lr decays, e.g. [100, 150, 175])"
                )
            elif isinstance(milestones, list) and any(
                not isinstance(a, int) or not isinstance(b, int) or a >= b for a, b in zip(milestones, milestones[1:])
            ):
                problems.append(f"experiments.{name}.{loop}.milestones: {milestones!r} must be strictly increasing")
        elif milestones is not None:
            problems.append(
                f"experiments.{name}.{loop}.milestones: only used with scheduler: "
                f"multistep (scheduler is {cfg.get('scheduler', 'cosine')!r}); remove it"
            )
    return problems


# what a variant shares with its base: it prunes the base's dense models
VARIANT_SHARED = ("dataset", "model", "pretrained", "pretrained_file", "train")


def _inherit_from_bases(experiments) -> None:
    """A variant (`variant_of: <base>`) states only what it changes: every top-level key it does
    not set is the base's (a copy), so an edit of the base's data, model or training carries
    over and the two keep sharing the base's dense models."""
    if not isinstance(experiments, dict):
        return
    for exp in experiments.values():
        base = exp.get("variant_of") if isinstance(exp, dict) else None
        if isinstance(base, str) and isinstance(experiments.get(base), dict) and base is not exp:
            for k, v in experiments[base].items():
                if k not in exp and k != "variant_of":
                    exp[k] = copy.deepcopy(v)


def _variant_problems(name: str, exp: dict, experiments: dict) -> list[str]:
    base = exp.get("variant_of")
    if base is None:
        return []
    key = f"experiments.{name}.variant_of"
    if base == name or base not in experiments:
        others = ", ".join(e for e in experiments if e != name)
        return [f"{key}: {base!r} is not another defined experiment; defined: {others}"]
    b = experiments[base]
    if not isinstance(b, dict):
        return []
    if b.get("variant_of") is not None:
        return [f"{key}: {base!r} is itself a variant (of {b['variant_of']!r}); name the base experiment"]
    problems = [
        f"experiments.{name}.{k}: must equal experiments.{base}.{k} (a variant prunes its base's "
        f"dense models), got {exp.get(k)!r} vs {b.get(k)!r}"
        for k in VARIANT_SHARED
        if exp.get(k) != b.get(k)
    ]
    extra = sorted(set(exp.get("seeds") or []) - set(b.get("seeds") or []))
    if extra:
        problems.append(
            f"experiments.{name}.seeds: {extra} are not seeds of {base!r} "
            f"({b.get('seeds')}); a variant can only use its base's dense models"
        )
    return problems


# ---------------------------------------------------------------- CUDA, answered without torch


@functools.cache
def cuda_present() -> bool:
    """Whether torch.cuda.is_available() would say True on this machine, answered without importing
    torch (2-4 s, which every Snakemake start-up would pay, dry runs included): the installed torch
    is a CUDA (or ROCm) build (its torch/version.py, read as text), and a GPU device node exists
    (/dev/nvidia0..., or ROCm's /dev/kfd) that CUDA_VISIBLE_DEVICES (HIP_VISIBLE_DEVICES) does not
    hide. For what `device: auto` asks of the workflow (a `gpu` resource, the deterministic-kernel
    check); the job itself resolves `auto` with torch (pwprune.train.resolve_device)."""
    import glob
    import importlib.util
    import os
    import re

    spec = importlib.util.find_spec("torch")  # finds the package without importing it
    if spec is None or not spec.origin:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return False

    def built_with(key):
        return re.search(rf"^{key}\s*(?::[^=\n]*)?=\s*['\"][^'\"]+['\"]", text, re.M) is not None

    def hidden(var):
        value = os.environ.get(var)
        return value is not None and (value.strip() == "" or value.strip().startswith("-1"))

    if built_with("hip"):
        return os.path.exists("/dev/kfd") and not hidden("HIP_VISIBLE_DEVICES") and not hidden("CUDA_VISIBLE_DEVICES")
    if built_with("cuda"):
        return bool(glob.glob("/dev/nvidia[0-9]*")) and not hidden("CUDA_VISIBLE_DEVICES")
    return False


def cuda_possible(device: str, cuda_available: bool) -> bool:
    """Whether jobs with params.yaml's `device` compute on CUDA: `cuda` and `cuda:N` always, `auto`
    when CUDA is available (cuda_available), `cpu` never."""
    device = str(device)
    if device == "auto":
        return bool(cuda_available)
    return device == "cuda" or device.startswith("cuda:")


def gpu_count(device: str, cuda_available: bool) -> int:
    """The `gpu` resource a compute job asks for (workflow/rules/common.smk gpus()): 1 when it
    computes on CUDA (cuda_possible), else 0. Snakemake counts it against `--resources gpu=N`
    (profiles/local allows 1 at a time); the Slurm executor asks the cluster for that many GPUs."""
    return 1 if cuda_possible(device, cuda_available) else 0


def cuda_deterministic_problems(config: dict, cuda_available: bool | None = None) -> list[str]:
    """Every experiment with `deterministic: true` whose model has no deterministic CUDA kernel for
    training (names.CUDA_NONDETERMINISTIC_MODELS: a pool that is adaptive and not global) while the
    device can be CUDA: its first backward pass on the GPU would stop the job, after its data was
    prepared. cuda_available: what `device: auto` finds (None: cuda_present(), asked only then)."""
    device = str(config.get("device", "auto"))
    found = [
        (name, exp["model"])
        for name, exp in (config.get("experiments") or {}).items()
        if isinstance(exp, dict)
        and exp.get("deterministic", True) is True
        and exp.get("model") in names.CUDA_NONDETERMINISTIC_MODELS
    ]
    if not found:
        return []
    if device == "auto" and cuda_available is None:
        cuda_available = cuda_present()
    if not cuda_possible(device, bool(cuda_available)):
        return []
    where = f"device is {device!r}" if device != "auto" else "device is 'auto' and this machine has a CUDA device"
    return [
        f"experiments.{name}.deterministic: true, but model {model!r} "
        f"{names.CUDA_NONDETERMINISTIC_MODELS[model]}, not a global 1x1 pool: its CUDA backward has no "
        f"deterministic kernel, and {where}, so the first training step would stop the job. "
        f"Set `deterministic: false` in experiments.{name} (as celeba_vgg16 does; the same GPU may "
        "then give slightly different numbers per run), or `device: cpu`"
        for name, model in found
    ]


def check_pretrained(config: dict) -> None:
    """The ImageNet weights file of every *active* experiment with pretrained: imagenet is in the
    torch hub cache (presence only; the hash is checked when the dense job loads it), a timm model's
    in the Hugging Face cache or its pretrained_file, so a missing file stops Snakemake before any
    job, dry runs included."""
    from pwprune.weights import check_pretrained_file

    problems = []
    for name in config["active"]:
        exp = config["experiments"][name]
        if exp["pretrained"] == "imagenet":
            try:
                if exp["model"].startswith(names.TIMM_PREFIX):
                    from pwprune.models import check_timm_weights, timm_name
                    from pwprune.weights import timm_local_file

                    if exp.get("pretrained_file") is not None:
                        timm_local_file(timm_name(exp["model"]), exp["pretrained_file"])
                    else:
                        check_timm_weights(exp["model"])
                    continue
                check_pretrained_file(exp["model"])
            except ValueError as e:
                key = "pretrained_file" if exp.get("pretrained_file") is not None else "pretrained"
                problems.append(f"experiments.{name}.{key}: {e}")
    if problems:
        raise ConfigError("missing pretrained weights:\n  " + "\n  ".join(problems))


def check_datasets(config: dict) -> None:
    """Kind-specific dataset keys (and attribute names) of every experiment, checked by the
    dataset code itself so the two can never disagree; torch-free, so cheap at start-up."""
    from pwprune.data import resolve_config

    problems = []
    for name, exp in config["experiments"].items():
        try:
            resolve_config(dict(exp["dataset"]))
        except ValueError as e:
            problems.append(f"experiments.{name}.dataset: {e}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def check_raw_data(config: dict) -> None:
    """The raw data of every *active* experiment is present (presence only, no decoding), so a
    missing dataset stops Snakemake before any job, dry runs included."""
    from pwprune.data import check_raw

    problems = []
    for name in config["active"]:
        try:
            check_raw(config["experiments"][name]["dataset"])
        except ValueError as e:
            problems.append(f"experiments.{name}.dataset: {e}")
    if problems:
        raise ConfigError("missing data:\n  " + "\n  ".join(problems))


def target_str(t: float) -> str:
    """How a FLOP-reduction target appears in paths: the shortest repr that round-trips."""
    return repr(float(t))


# ---------------------------------------------------------------- numerics of a compute job

# A stage without its own resources entry takes another's: evaluation holds the same data and
# model as fine-tuning, so it gets fine-tuning's memory, time and threads unless told otherwise.
RESOURCE_FALLBACK = {"evaluate": "finetune"}
COMPUTE_STAGES = ("train", "prune", "finetune", "evaluate")


def stage_resources(experiment: dict, stage: str) -> dict:
    """The experiment's `resources.<stage>` entry, or its fallback stage's, or {}."""
    res = experiment.get("resources") or {}
    return res.get(stage) or res.get(RESOURCE_FALLBACK.get(stage), {}) or {}


def compute_threads(experiment: dict, stage: str, device: str) -> int | None:
    """The CPU thread count a compute job computes with: `resources.<stage>.threads` (1 when
    unset), set exactly whatever Snakemake's --cores or the cluster allots, because the number of
    threads changes how a CPU reduction is split and so the result's last bits. None on a CUDA
    device, where the CPU threads do not enter the arithmetic (the job then uses what it is
    allotted, and a changed count reruns nothing). "auto" counts as CPU: it is resolved inside
    the job, and a job that finds a GPU merely records a thread count it did not need."""
    if str(device).startswith("cuda"):
        return None
    return int(stage_resources(experiment, stage).get("threads", 1))


def numerics(experiment: dict, stage: str, device: str) -> dict:
    """What a compute job's numbers depend on beyond its inputs and method settings, in canonical
    form, passed to the job as its `numerics` param (so changing it reruns exactly the jobs it
    changes): the configured thread count (None on CUDA) and deterministic mode, and for the
    training stages (dense training, fine-tuning: TRAINING_STAGES) the precision and memory
    layout they train in; pruning and evaluation compute in fp32."""
    out = {
        "threads": compute_threads(experiment, stage, device),
        "deterministic": bool(experiment.get("deterministic", True)),
    }
    if stage in TRAINING_STAGES:
        out["precision"] = experiment.get("precision", "fp32")
        out["channels_last"] = bool(experiment.get("channels_last", False))
    return out


# the stages whose training loop `precision` and `channels_last` apply to
TRAINING_STAGES = ("train", "finetune")
