# Raw dataset -> prepared arrays + group attribute per sample (decoded once, read by every job).


def raw_version(wildcards):
    """The DVC file of the raw dataset, when it is tracked: `dvc add` of new bytes rewrites it, so
    preparation reruns. Not the raw folder itself: a missing dataset must reach pwprune.data,
    whose error says where it belongs and how to get it (the digits default has none)."""
    from pwprune.data import resolve_config

    root = resolve_config(dict(exp_cfg(wildcards)["dataset"])).get("root")
    dvc_file = f"{str(root).rstrip('/')}.dvc" if root else None
    return [dvc_file] if dvc_file and Path(dvc_file).exists() else []


rule prepare_data:
    input:
        raw_version,
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
