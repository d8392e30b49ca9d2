from pwprune.stages import labels
from pwprune.stages.inputs import setup
from pwprune.stages.jobs import job_log
from pwprune.stages.prune import prune_stage

with job_log(snakemake.log[0], exit_when_done=True) as log:
    p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
    device = setup(snakemake.threads, p.device, p.seed)
    prune_stage(
        i.data,
        i.dense,
        i.teacher,
        p.prune,
        p.seed,
        device,
        labels.prune(w),
        out=dict(snakemake.output.items()),
        log=log,
        trajectory_path=i.get("trajectory"),
    )
