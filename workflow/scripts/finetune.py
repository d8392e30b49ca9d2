from pwprune.stages import labels
from pwprune.stages.finetune import finetune_stage
from pwprune.stages.inputs import deterministic_ops, setup
from pwprune.stages.jobs import job_log

with (
    job_log(snakemake.log[0], exit_when_done=True) as log,
    deterministic_ops(f"experiments.{snakemake.wildcards.exp}.deterministic"),
):
    p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
    device = setup(p.numerics, snakemake.threads, p.device, p.seed, log)
    finetune_stage(
        i.data,
        i.pruned,
        i.dense,
        i.teacher,
        p.finetune,
        p.seed,
        device,
        labels.finetune(w),
        out=dict(snakemake.output.items()),
        log=log,
    )
