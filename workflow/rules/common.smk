# Config validation, path patterns and the grid. Included first by the Snakefile.
from pathlib import Path

import pwprune.config as pc
import pwprune.provenance as provenance
import pwprune.names as names

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
    method="|".join(names.METHODS),
    ploss="|".join(names.PRUNE_LOSSES),
    floss="|".join(names.FINETUNE_LOSSES),
    target=r"0\.\d+",


def exp_cfg(wildcards):
    return EXPS[wildcards.exp]


def code_version(script):
    """Hash of the pwprune code that a rule's script can run (pwprune.provenance: the script's
    imports, followed through every pwprune module they import), passed as a param: editing a
    module reruns exactly the rules whose scripts reach it, and nothing upstream (no reliance on
    file times). The script's own text is Snakemake's code trigger."""
    return provenance.code_hash(Path(workflow.basedir) / "workflow" / "scripts" / script, root=workflow.basedir)


# one hash per script, computed once at start-up
CODE = {
    s: code_version(s)
    for s in (
        "prepare_data.py",
        "train_dense.py",
        "prune.py",
        "finetune.py",
        "evaluate.py",
        "latency.py",
        "teacher_diagnostic.py",
        "aggregate.py",
        "bootstrap.py",
        "plot.py",
        "teacher_figure.py",
        "summary.py",
        "variant_summary.py",
        "variant_figure.py",
    )
}


def device():
    return config["device"]


def small_group(kind):
    """The cluster job group of a job that stays small (seconds of work): data-free pruning, the
    latency measurement, the teacher diagnostic. profiles/slurm's group-components then submits
    many of one kind as one sbatch; a local run ignores groups."""

    def get(w):
        if kind == "prune" and w.method not in pc.DATA_FREE_METHODS:
            return None
        return f"small_{kind}"

    return get


def inference_params(w):
    """How a checkpoint-writing job computes the checkpoint's outputs (pwprune.outputs)."""
    return {"batch_size": (exp_cfg(w).get("inference") or {}).get("batch_size", 256)}


def _stage_resources(exp, stage):
    return pc.stage_resources(EXPS[exp], stage)


def numerics_for(stage):
    """The compute job's thread count (None on CUDA) and deterministic mode, as its `numerics`
    param (pwprune.config.numerics): what it computes with never depends on --cores."""

    def get(wildcards):
        return pc.numerics(EXPS[wildcards.exp], stage, device())

    return get


def resources_for(stage, key, default):
    def get(wildcards, attempt=1):
        return _stage_resources(wildcards.exp, stage).get(key, default)

    return get


def threads_for(stage):
    # Snakemake's allotment (scaled down to --cores): where and when the job runs, not what it
    # computes (numerics_for). threads cannot be a function of wildcards in every executor; take
    # the largest over the active experiments (the default run uses 1).
    return max([_stage_resources(e, stage).get("threads", 1) for e in ACTIVE] or [1])


def gpus():
    """The `gpu` resource of a compute job: 1 on CUDA, `device: auto` included when this machine
    has a CUDA device (pwprune.config.gpu_count; found without importing torch)."""
    return pc.gpu_count(device(), pc.cuda_present())


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
                    out.append(
                        dict(
                            exp=exp,
                            seed=seed,
                            method=method,
                            target=pc.target_str(target),
                            ploss=ploss,
                            floss=floss,
                            label=label,
                        )
                    )
    return out


def ablation_runs(exp):
    abl = EXPS[exp].get("ablation") or {}
    if not abl.get("methods") or not abl.get("targets"):
        return []
    return runs(exp, labels=list(pc.ABLATION_LABELS), methods=abl["methods"], targets=abl["targets"])


def run_files(run_list, name):
    return [f"{TUNED}/{name}".format(**r) for r in run_list]


def pruned_file(r, name):
    return f"{PRUNED}/{name}".format(**r)


def base_exp(exp):
    """The experiment whose prepared data and dense models `exp` prunes: its `variant_of`, else
    itself. A variant differs from its base only in how it prunes and fine-tunes (checked by
    pwprune.config), so its trials pair with the base's on the very same dense models."""
    return EXPS[exp].get("variant_of") or exp


def dense_file(r, name):
    r = dict(r.items())
    return f"{DENSE}/{name}".format(**{**r, "exp": base_exp(r["exp"])})


def prep_dir(exp):
    return PREP.format(exp=base_exp(exp))


def variants():
    """(variant, base) for every experiment that is a variant of an active one."""
    return [(e, EXPS[e]["variant_of"]) for e in EXPS if EXPS[e].get("variant_of") in ACTIVE]


# ---------------------------------------------------------------- preparation (data.smk)


def raw_version(wildcards):
    """The DVC file of the raw dataset, when it is tracked: `dvc add` of new bytes rewrites it, so
    preparation reruns. Not the raw folder itself: a missing dataset must reach pwprune.data,
    whose error says where it belongs and how to get it (the digits default has none)."""
    from pwprune.data import resolve_config

    root = resolve_config(dict(exp_cfg(wildcards)["dataset"])).get("root")
    dvc_file = f"{str(root).rstrip('/')}.dvc" if root else None
    return [dvc_file] if dvc_file and Path(dvc_file).exists() else []


# ---------------------------------------------------------------- teacher diagnostic (diagnose.smk)


def pw_setting_list(cfg):
    """Every distinct PW setting (min_weight, gamma) the experiment's methods use, with the
    methods that use it (ablation methods included)."""
    methods = list(cfg["prune"]["methods"]) + list((cfg.get("ablation") or {}).get("methods") or [])
    by_setting = {}
    for method in dict.fromkeys(methods):
        s = pc.pw_settings(cfg, method)
        by_setting.setdefault((float(s["min_weight"]), float(s["gamma"])), []).append(method)
    return [{"min_weight": m, "gamma": g, "methods": ms} for (m, g), ms in sorted(by_setting.items())]


# ---------------------------------------------------------------- pruning (prune.smk)


def prune_params(w):
    """Only what the pruned result depends on: the PW settings reach data-free methods never,
    and data-driven ones only when their pruning-phase loss is a PW variant."""
    cfg = exp_cfg(w)
    prune = cfg["prune"]
    p = {
        "method": w.method,
        "target": float(w.target),
        "tolerance": prune.get("tolerance", 0.02),
        "layers": prune.get("layers", "all"),  # what is pruned and which MACs the target counts
        "options": method_options(w.method, w.ploss, prune.get(w.method, {})),
        "loss": w.ploss,
    }
    if "transformer" in prune:  # only where set: the jobs of models without attention keep their params
        p["transformer"] = prune["transformer"]
    if w.method not in pc.DATA_FREE_METHODS:
        p["batch_size"] = prune.get("batch_size", cfg["train"]["batch_size"])
        p["augment"] = cfg["train"].get("augment", False)
        if w.ploss.startswith("pw"):
            p["pw"] = pc.pw_settings(cfg, w.method)
    return p


def method_options(method, ploss, options):
    """The method's options as this job uses them. Taylor's restore_weights "authors" (the authors
    restore the dense weights for the PW arm only, their scripts/prune.py:226) is resolved per job,
    so switching it reruns the PW arm's jobs and not the CE arm's; "never" is the default."""
    options = dict(options)
    if method == "taylor" and options.get("restore_weights") == "authors":
        options["restore_weights"] = "always" if ploss.startswith("pw") else "never"
    if options.get("restore_weights") == "never":
        del options["restore_weights"]
    return options


def taylor_previous_target(w):
    """The next smaller target whose Taylor trajectory this job continues (schedule "authors"),
    or None. Targets of the main grid and of the ablation count: a trajectory's result at a
    target does not depend on where it stopped before (pwprune.pruning.trajectory), so the
    chain only saves time and never changes a number."""
    cfg = exp_cfg(w)
    if w.method != "taylor" or cfg["prune"].get("taylor", {}).get("schedule", "geometric") != "authors":
        return None
    targets = set(cfg["prune"]["targets"]) | set((cfg.get("ablation") or {}).get("targets") or [])
    smaller = [t for t in targets if t < float(w.target)]
    return pc.target_str(max(smaller)) if smaller else None


def prune_inputs(w):
    wc = dict(w.items())
    inputs = {"data": prep_dir(w.exp), "dense": dense_file(wc, "model.pt"), "teacher": dense_file(wc, "teacher.pt")}
    previous = taylor_previous_target(w)
    if previous is not None:
        inputs["trajectory"] = pruned_file({**wc, "target": previous}, "model.pt")
    return inputs


# ---------------------------------------------------------------- fine-tuning (finetune.smk)


def finetune_params(w):
    cfg = exp_cfg(w)
    p = {"loop": cfg["finetune"], "loss": w.floss}
    if w.floss.startswith("pw"):
        p["pw"] = pc.pw_settings(cfg, w.method)
    elif w.floss == "ceag":
        p["ceag"] = pc.ceag_settings(cfg)
    return p


# ---------------------------------------------------------------- report (report.smk)


def run_table(run_list):
    """What the aggregator needs of each run: its labels, its three checkpoints' outputs files
    (pwprune.outputs), its loss shares and its fine-tuning history (the validation curves of
    results/convergence.csv)."""
    table = []
    for r in run_list:
        table.append(
            {
                **r,
                "dataset": EXPS[r["exp"]]["dataset"]["kind"],
                "model": EXPS[r["exp"]]["model"],
                "dense": dense_file(r, "outputs.npz"),
                "pruned": pruned_file(r, "outputs.npz"),
                "finetuned": (f"{TUNED}/outputs.npz").format(**r),
                "shares": (f"{TUNED}/loss_shares.csv").format(**r),
                "history": (f"{TUNED}/history.json").format(**r),
            }
        )
    return table


def table_inputs(table):
    return sorted({row[k] for row in table for k in ("dense", "pruned", "finetuned", "shares", "history")})


def outputs_inputs(table):
    """Every checkpoint's outputs file of a table (the bootstrap's input)."""
    return sorted({row[k] for row in table for k in ("dense", "pruned", "finetuned")})


def table_checkpoints(table):
    """The folders of every checkpoint a table reads."""
    return sorted({str(Path(f).parent) for f in outputs_inputs(table)})


def latency_files(name, table):
    """One latency file per experiment and seed whose checkpoints the table `name` reads."""
    return sorted({str(Path(*Path(c).parts[:3]) / f"latency_{name}.csv") for c in table_checkpoints(table)})


TABLE_NAMES = ("main", "ablation", "variants")


def latency_models(w):
    """The checkpoints of experiment w.exp, seed w.seed that the table w.table reads."""
    prefix = f"results/{w.exp}/seed{w.seed}/"
    return [f"{c}/model.pt" for c in table_checkpoints(TABLES[w.table]) if c.startswith(prefix)]


def teacher_diagnostics(exps):
    return [(f"{DENSE}/teacher_diagnostic.csv").format(exp=e, seed=s) for e in exps for s in EXPS[e]["seeds"]]


def report_figures():
    """Every main figure, each PNG marked for `snakemake --report` with its own caption file
    (Snakemake does not fill wildcards into a caption path, so rule figure cannot carry it).
    (No line may start with `report(`: Snakemake's parser takes that for the report directive.)"""
    out = []
    for exp in ACTIVE:
        for fig in MAIN_FIGURES + ["teacher_weights"]:
            png = f"results/figures/{exp}/{fig}.png"
            marked = report(png, caption=f"../report/{fig}.rst", category=exp, subcategory="figures")
            out += [marked, f"results/figures/{exp}/{fig}.pdf"]
    return out


def variant_run_list():
    out = []
    for variant, base in variants():
        cfg = EXPS[variant]
        out += runs(variant)
        out += [
            r
            for r in runs(base, labels=cfg["losses"], methods=cfg["prune"]["methods"], targets=cfg["prune"]["targets"])
            if int(r["seed"]) in cfg["seeds"]
        ]
    return out
