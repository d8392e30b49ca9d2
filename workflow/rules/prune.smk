# Dense checkpoint (+ teacher outputs for data-driven methods) -> pruned checkpoint at one
# MAC-reduction target, channels physically removed. Its metrics: rule evaluate (evaluate.smk).


rule prune:
    input:
        unpack(prune_inputs),
    output:
        model=f"{PRUNED}/model.pt",
        info=f"{PRUNED}/prune.json",
    params:
        prune=prune_params,
        seed=lambda w: int(w.seed),
        device=device(),
        numerics=numerics_for("prune"),
        code=CODE["prune.py"],
    log:
        f"{LOGS}/prune/{{method}}-{{ploss}}/{{target}}.log",
    benchmark:
        f"{BENCH}/prune/{{method}}-{{ploss}}/{{target}}.tsv"
    threads: threads_for("prune")
    resources:
        mem_mb=resources_for("prune", "mem_mb", 2000),
        runtime=resources_for("prune", "runtime", 30),
        gpu=gpus(),
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/prune.py"
