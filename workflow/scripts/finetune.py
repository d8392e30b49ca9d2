from pwprune.stages import labels
from pwprune.stages.finetune import finetune_stage
from pwprune.stages.inputs import setup
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
    device = setup(snakemake.threads, p.device, p.seed)
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
