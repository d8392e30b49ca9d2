# Dense checkpoint (+ teacher outputs for data-driven methods) -> pruned checkpoint at one
# MAC-reduction target, channels physically removed, and its outputs on the evaluation splits.


rule prune:
    input:
        unpack(prune_inputs),
    output:
        model=f"{PRUNED}/model.pt",
        info=f"{PRUNED}/prune.json",
        outputs=f"{PRUNED}/outputs.npz",
    params:
        prune=prune_params,
        seed=lambda w: int(w.seed),
        inference=inference_params,
        device=device(),
        numerics=numerics_for("prune"),
        code=CODE["prune.py"],
    log:
        f"{LOGS}/prune/{{method}}-{{ploss}}/{{target}}.log",
    benchmark:
        f"{BENCH}/prune/{{method}}-{{ploss}}/{{target}}.tsv"
    # on a cluster, data-free pruning is seconds of work: profiles/slurm batches these jobs into
    # one sbatch each (group-components); locally, groups are ignored
    group:
        small_group("prune")
    threads: threads_for("prune")
    resources:
        mem_mb=resources_for("prune", "mem_mb", 2000),
        runtime=resources_for("prune", "runtime", 30),
        gpu=gpus(),
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/prune.py"
