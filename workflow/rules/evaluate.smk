# Metrics are computed from the outputs that the training, pruning and fine-tuning jobs write
# beside each checkpoint (pwprune.outputs; the tidy table: rule aggregate, report.smk). What needs
# the model again is measured here, in as few processes as possible.

CHECKPOINT = "results/{exp}/seed{seed}/{checkpoint}"


# Every checkpoint that the table `main` (results/metrics.csv), `ablation` or `variants` reads,
# of one experiment and seed -> their latency per sample, in one process.
rule latency:
    input:
        models=latency_models,
    output:
        latency="results/{exp}/seed{seed}/latency_{table}.csv",
    wildcard_constraints:
        table="|".join(TABLE_NAMES),
    params:
        evaluate=lambda w: exp_cfg(w).get("evaluate", {}),
        device=device(),
        numerics=numerics_for("evaluate"),
        code=CODE["latency.py"],
    log:
        f"{LOGS}/latency_{{table}}.log",
    benchmark:
        f"{BENCH}/latency_{{table}}.tsv"
    group:
        small_group("latency")
    threads: threads_for("evaluate")
    resources:
        mem_mb=resources_for("evaluate", "mem_mb", 2000),
        runtime=resources_for("evaluate", "runtime", 10),
        gpu=gpus(),
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/latency.py"


# Any one checkpoint (dense, pruned or fine-tuned; one pulled with DVC, or a user's own put at a
# grid path) -> its metrics, in one process. Not part of the grid's DAG: ask for the file, e.g.
#   snakemake --cores 2 results/default/seed0/pruned/taylor-pw/0.5/metrics.csv
rule evaluate:
    input:
        model=f"{CHECKPOINT}/model.pt",
        data=lambda w: prep_dir(w.exp),
    output:
        metrics=f"{CHECKPOINT}/metrics.csv",
    wildcard_constraints:
        checkpoint=r"dense|pruned/[^/]+/0\.\d+|finetuned/[^/]+/0\.\d+",
    params:
        inference=inference_params,
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
