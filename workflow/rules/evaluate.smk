# Any checkpoint (dense, pruned or fine-tuned) + the `evaluate` settings -> its per-group metrics.
# Training, pruning and fine-tuning jobs do not evaluate: an evaluation setting or the metric code
# changes re-evaluate every checkpoint and never retrain one. A checkpoint pulled with DVC is
# re-evaluated by asking for its metrics file, e.g.
#   snakemake --cores 2 results/default/seed0/pruned/taylor-pw/0.5/metrics.csv

CHECKPOINT = "results/{exp}/seed{seed}/{checkpoint}"


rule evaluate:
    input:
        model=f"{CHECKPOINT}/model.pt",
        data=lambda w: prep_dir(w.exp),
    output:
        metrics=f"{CHECKPOINT}/metrics.csv",
        predictions=f"{CHECKPOINT}/predictions.npz",
    wildcard_constraints:
        checkpoint=r"dense|pruned/[^/]+/0\.\d+|finetuned/[^/]+/0\.\d+",
    params:
        evaluate=lambda w: exp_cfg(w).get("evaluate", {}),
        device=device(),
        numerics=numerics_for("evaluate"),
        code=CODE["evaluate.py"],
    log:
        f"{LOGS}/evaluate/{{checkpoint}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{checkpoint}}.tsv"
    threads: threads_for("evaluate")
    resources:
        mem_mb=resources_for("evaluate", "mem_mb", 2000),
        runtime=resources_for("evaluate", "runtime", 10),
        gpu=gpus(),
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/evaluate.py"
