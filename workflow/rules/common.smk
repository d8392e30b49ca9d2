# Config validation, path patterns and the grid. Included first by the Snakefile.
import hashlib
from pathlib import Path

import pwprune.config as pc

# Strict re-read of every config file in play: plain YAML silently keeps the last of two
# duplicated keys (e.g. two experiments with one name); the strict loader refuses them.
try:
    for _f in list(workflow.configfiles):
        pc.load_yaml_strict(_f)
    pc.validate(config, workflow.source_path("../schemas/params.schema.yaml"))
    pc.check_datasets(config)
    pc.check_raw_data(config)
    pc.check_pretrained(config)
except pc.ConfigError as e:
    raise WorkflowError(f"{e}\n(checked: {', '.join(map(str, workflow.configfiles))})")

ACTIVE = list(config["active"])
EXPS = config["experiments"]

PREP = "data/prepared/{exp}"
DENSE = "results/{exp}/seed{seed}/dense"
PRUNED = "results/{exp}/seed{seed}/pruned/{method}-{ploss}/{target}"
TUNED = "results/{exp}/seed{seed}/finetuned/{method}-{ploss}-{floss}/{target}"
LOGS = "logs/{exp}/seed{seed}"
BENCH = "benchmarks/out/{exp}/seed{seed}"

wildcard_constraints:
    exp=r"[A-Za-z0-9_]+",
    seed=r"\d+",
    method="|".join(["random", "magnitude", "taylor", "autobot"]),
    ploss=r"none|ce|pw|pw_weight|pw_correct",
    floss=r"ce|pw|pw_weight|pw_correct",
    target=r"0\.\d+",


def exp_cfg(wildcards):
    return EXPS[wildcards.exp]


def code_version(*paths):
    """Hash of the code a stage runs, passed as a param: editing one stage's code reruns that
    stage and what follows it, and nothing upstream (no reliance on file times)."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(workflow.basedir) / p
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(f.relative_to(workflow.basedir).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


# Code each stage depends on (shared helpers first).
COMMON_CODE = ["pwprune/pipeline.py", "pwprune/models.py", "pwprune/metrics.py", "pwprune/train.py",
               "pwprune/loss.py", "pwprune/checkpoint.py", "pwprune/weights.py"]
CODE = {
    "prepare": code_version("pwprune/data", "workflow/scripts/prepare_data.py"),
    "train": code_version(*COMMON_CODE, "workflow/scripts/train_dense.py"),
    "prune": code_version(*COMMON_CODE, "pwprune/pruning", "workflow/scripts/prune.py"),
    "finetune": code_version(*COMMON_CODE, "workflow/scripts/finetune.py"),
    "diagnose": code_version("pwprune/diagnostics.py", "pwprune/loss.py", "pwprune/pipeline.py",
                             "workflow/scripts/teacher_diagnostic.py"),
}


def device():
    return config["device"]


def resources_for(stage, key, default):
    def get(wildcards, attempt=1):
        return EXPS[wildcards.exp].get("resources", {}).get(stage, {}).get(key, default)
    return get


def threads_for(stage):
    # threads cannot be a function of wildcards in every executor; take the largest over the
    # active experiments (the default run uses 1).
    return max([EXPS[e].get("resources", {}).get(stage, {}).get("threads", 1) for e in ACTIVE] or [1])


def gpus():
    return 1 if device().startswith("cuda") else 0


def runs(exp, labels=None, methods=None, targets=None):
    """Every fine-tuning run of the grid: dicts with the wildcard values plus the label."""
    cfg = EXPS[exp]
    labels = labels or cfg["losses"]
    out = []
    for seed in cfg["seeds"]:
        for method in methods or cfg["prune"]["methods"]:
            for target in targets or cfg["prune"]["targets"]:
                for label in labels:
                    ploss, floss = pc.phase_losses(label, method)
                    out.append(dict(exp=exp, seed=seed, method=method, target=pc.target_str(target),
                                    ploss=ploss, floss=floss, label=label))
    return out


def ablation_runs(exp):
    abl = EXPS[exp].get("ablation") or {}
    if not abl.get("methods") or not abl.get("targets"):
        return []
    return runs(exp, labels=list(pc.ABLATION_LABELS), methods=abl["methods"], targets=abl["targets"])


def run_files(run_list, name):
    return [(TUNED + "/" + name).format(**r) for r in run_list]


def pruned_file(r, name):
    return (PRUNED + "/" + name).format(**r)


def base_exp(exp):
    """The experiment whose prepared data and dense models `exp` prunes: its `variant_of`, else
    itself. A variant differs from its base only in how it prunes and fine-tunes (checked by
    pwprune.config), so its trials pair with the base's on the very same dense models."""
    return EXPS[exp].get("variant_of") or exp


def dense_file(r, name):
    r = dict(r.items())
    return (DENSE + "/" + name).format(**{**r, "exp": base_exp(r["exp"])})


def prep_dir(exp):
    return PREP.format(exp=base_exp(exp))


def variants():
    """(variant, base) for every experiment that is a variant of an active one."""
    return [(e, EXPS[e]["variant_of"]) for e in EXPS if EXPS[e].get("variant_of") in ACTIVE]
