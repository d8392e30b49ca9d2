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
        "options": prune.get(w.method, {}),
        "loss": w.ploss,
    }
    if w.method not in pc.DATA_FREE_METHODS:
        p["batch_size"] = prune.get("batch_size", cfg["train"]["batch_size"])
        p["augment"] = cfg["train"].get("augment", False)
        if w.ploss.startswith("pw"):
            p["pw"] = pc.pw_settings(cfg, w.method)
    return p


rule prune:
    input:
        data=PREP,
        dense=DENSE + "/model.pt",
        dense_metrics=DENSE + "/metrics.csv",
        teacher=DENSE + "/teacher.pt",
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
