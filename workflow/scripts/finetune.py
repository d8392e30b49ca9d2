from pwprune.pipeline import finetune_stage, job_log, setup

with job_log(snakemake.log[0]) as log:
    p, i = snakemake.params, snakemake.input
    device = setup(snakemake.threads, p.device, p.seed)
    finetune_stage(i.data, i.pruned, i.pruned_info, i.dense, i.teacher, p.finetune, p.evaluate,
                   p.seed, device, p.context, out=dict(snakemake.output.items()), log=log)
