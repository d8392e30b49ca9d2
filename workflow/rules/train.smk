# Prepared data -> dense (baseline) checkpoint, its per-group metrics, and the teacher outputs
# that the PW loss reuses when the data has no random augmentation.


rule train_dense:
    input:
        data=PREP,
    output:
        model=DENSE + "/model.pt",
        metrics=DENSE + "/metrics.csv",
        history=DENSE + "/history.json",
        teacher=DENSE + "/teacher.pt",
    params:
        model=lambda w: exp_cfg(w)["model"],
        pretrained=lambda w: exp_cfg(w)["pretrained"],
        train=lambda w: exp_cfg(w)["train"],
        evaluate=lambda w: exp_cfg(w).get("evaluate", {}),
        seed=lambda w: int(w.seed),
        device=device(),
        context=lambda w: f"experiment {w.exp}, dense training, seed {w.seed}",
        code=CODE["train"],
    log:
        LOGS + "/train_dense.log",
    benchmark:
        BENCH + "/train_dense.tsv"
    threads: threads_for("train")
    resources:
        mem_mb=resources_for("train", "mem_mb", 2000),
        runtime=resources_for("train", "runtime", 30),
        gpu=gpus(),
    script:
        "../scripts/train_dense.py"
