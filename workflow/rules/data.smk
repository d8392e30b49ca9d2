# Raw dataset -> prepared arrays + group attribute per sample (decoded once, read by every job).


rule prepare_data:
    input:
        raw_version,
    output:
        directory(PREP),
    params:
        dataset=lambda w: exp_cfg(w)["dataset"],
        code=CODE["prepare_data.py"],
    log:
        "logs/{exp}/prepare_data.log",
    benchmark:
        "benchmarks/out/{exp}/prepare_data.tsv"
    threads: 1
    resources:
        mem_mb=resources_for("prepare", "mem_mb", 2000),
        runtime=resources_for("prepare", "runtime", 10),
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/prepare_data.py"
