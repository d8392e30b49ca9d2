# Pruned checkpoint + loss (ce | pw | ablations) -> fine-tuned checkpoint, its outputs on the
# evaluation splits and the per-epoch share of the loss on each label x group cell.


rule finetune:
    input:
        data=lambda w: prep_dir(w.exp),
        pruned=f"{PRUNED}/model.pt",
        dense=lambda w: dense_file(w, "model.pt"),
        teacher=lambda w: dense_file(w, "teacher.pt"),
    output:
        model=f"{TUNED}/model.pt",
        shares=f"{TUNED}/loss_shares.csv",
        history=f"{TUNED}/history.json",
        outputs=f"{TUNED}/outputs.npz",
    params:
        finetune=finetune_params,
        seed=lambda w: int(w.seed),
        inference=inference_params,
        device=device(),
        numerics=numerics_for("finetune"),
        code=CODE["finetune.py"],
    log:
        f"{LOGS}/finetune/{{method}}-{{ploss}}-{{floss}}/{{target}}.log",
    benchmark:
        f"{BENCH}/finetune/{{method}}-{{ploss}}-{{floss}}/{{target}}.tsv"
    threads: threads_for("finetune")
    resources:
        mem_mb=resources_for("finetune", "mem_mb", 2000),
        runtime=resources_for("finetune", "runtime", 30),
        resume_minutes=resources_for("finetune", "resume_minutes", 10),
        gpu=gpus(),
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/finetune.py"
