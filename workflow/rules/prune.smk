# Dense checkpoint (+ teacher outputs for data-driven methods) -> pruned checkpoint at one
# FLOP-reduction target, channels physically removed, evaluated before fine-tuning.


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
    inputs = {"data": prep_dir(w.exp), "dense": dense_file(wc, "model.pt"),
              "dense_metrics": dense_file(wc, "metrics.csv"), "teacher": dense_file(wc, "teacher.pt")}
    previous = taylor_previous_target(w)
    if previous is not None:
        inputs["trajectory"] = pruned_file({**wc, "target": previous}, "model.pt")
    return inputs


rule prune:
    input:
        unpack(prune_inputs),
    output:
        model=PRUNED + "/model.pt",
        metrics=PRUNED + "/metrics.csv",
        info=PRUNED + "/prune.json",
    params:
        prune=prune_params,
        evaluate=lambda w: exp_cfg(w).get("evaluate", {}),
        seed=lambda w: int(w.seed),
        device=device(),
        context=lambda w: f"experiment {w.exp}, pruning {w.method} to {w.target}, seed {w.seed}",
        code=CODE["prune"],
    log:
        LOGS + "/prune/{method}-{ploss}/{target}.log",
    benchmark:
        BENCH + "/prune/{method}-{ploss}/{target}.tsv"
    threads: threads_for("prune")
    resources:
        mem_mb=resources_for("prune", "mem_mb", 2000),
        runtime=resources_for("prune", "runtime", 30),
        gpu=gpus(),
    script:
        "../scripts/prune.py"
