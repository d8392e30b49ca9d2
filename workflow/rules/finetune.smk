# Pruned checkpoint + loss (ce | pw | ablations) -> fine-tuned checkpoint, its per-group
# metrics, and the per-epoch share of the loss on each label x group cell.


def finetune_params(w):
    cfg = exp_cfg(w)
    p = {"loop": cfg["finetune"], "loss": w.floss}
    if w.floss.startswith("pw"):
        p["pw"] = pc.pw_settings(cfg, w.method)
    return p


rule finetune:
    input:
        data=lambda w: prep_dir(w.exp),
        pruned=PRUNED + "/model.pt",
        pruned_info=PRUNED + "/prune.json",
        dense=lambda w: dense_file(w, "model.pt"),
        teacher=lambda w: dense_file(w, "teacher.pt"),
    output:
        model=TUNED + "/model.pt",
        metrics=TUNED + "/metrics.csv",
        shares=TUNED + "/loss_shares.csv",
        history=TUNED + "/history.json",
    params:
        finetune=finetune_params,
        evaluate=lambda w: exp_cfg(w).get("evaluate", {}),
        seed=lambda w: int(w.seed),
        device=device(),
        context=lambda w: (f"experiment {w.exp}, fine-tuning {w.method}-{w.ploss} at {w.target} "
                           f"with {w.floss}, seed {w.seed}"),
        code=CODE["finetune"],
    log:
        LOGS + "/finetune/{method}-{ploss}-{floss}/{target}.log",
    benchmark:
        BENCH + "/finetune/{method}-{ploss}-{floss}/{target}.tsv"
    threads: threads_for("finetune")
    resources:
        mem_mb=resources_for("finetune", "mem_mb", 2000),
        runtime=resources_for("finetune", "runtime", 30),
        gpu=gpus(),
    script:
        "../scripts/finetune.py"
