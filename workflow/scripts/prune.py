from pwprune.pipeline import job_log, prune_stage, setup

with job_log(snakemake.log[0]) as log:
    p = snakemake.params
    device = setup(snakemake.threads, p.device, p.seed)
    prune_stage(snakemake.input.data, snakemake.input.dense, snakemake.input.teacher, p.prune,
                p.evaluate, p.seed, device, p.context, out=dict(snakemake.output.items()), log=log,
                trajectory_path=snakemake.input.get("trajectory"))
