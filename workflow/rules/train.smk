# Prepared data -> dense (baseline) checkpoint, its outputs on the evaluation splits (what every
# metric is computed from, pwprune.outputs) and the teacher outputs that the PW loss reuses when
# the data has no random augmentation.


rule train_dense:
    input:
        data=PREP,
    output:
        model=f"{DENSE}/model.pt",
        history=f"{DENSE}/history.json",
        teacher=f"{DENSE}/teacher.pt",
        outputs=f"{DENSE}/outputs.npz",
    params:
        model=lambda w: exp_cfg(w)["model"],
        model_options=lambda w: exp_cfg(w).get("model_options") or {},
        pretrained=lambda w: exp_cfg(w).get("pretrained_file") or exp_cfg(w)["pretrained"],
        train=lambda w: exp_cfg(w)["train"],
        seed=lambda w: int(w.seed),
        inference=inference_params,
        device=device(),
        numerics=numerics_for("train"),
        code=CODE["train_dense.py"],
    log:
        f"{LOGS}/train_dense.log",
    benchmark:
        f"{BENCH}/train_dense.tsv"
    threads: threads_for("train")
    resources:
        mem_mb=resources_for("train", "mem_mb", 2000),
        runtime=resources_for("train", "runtime", 30),
        resume_minutes=resources_for("train", "resume_minutes", 10),
        gpu=gpus(),
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/train_dense.py"
