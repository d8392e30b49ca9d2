# Raw dataset -> prepared arrays + group attribute per sample (decoded once, read by every job).


rule prepare_data:
    output:
        directory(PREP),
    params:
        dataset=lambda w: exp_cfg(w)["dataset"],
        code=CODE["prepare"],
    log:
        "logs/{exp}/prepare_data.log",
    benchmark:
        "benchmarks/out/{exp}/prepare_data.tsv"
    threads: 1
    resources:
        mem_mb=resources_for("prepare", "mem_mb", 2000),
        runtime=resources_for("prepare", "runtime", 10),
    script:
        "../scripts/prepare_data.py"
