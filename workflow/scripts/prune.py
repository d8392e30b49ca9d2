from pwprune.outputs import write_checkpoint_outputs
from pwprune.stages import labels
from pwprune.stages.inputs import deterministic_ops, setup
from pwprune.stages.jobs import job_log
from pwprune.stages.prune import prune_stage

with (
    job_log(snakemake.log[0], exit_when_done=True) as log,
    deterministic_ops(f"experiments.{snakemake.wildcards.exp}.deterministic"),
):
    p, w, i, o = snakemake.params, snakemake.wildcards, snakemake.input, snakemake.output
    device = setup(p.numerics, snakemake.threads, p.device, p.seed, log)
    prune_stage(
        i.data,
        i.dense,
        i.teacher,
        p.prune,
        p.seed,
        device,
        labels.prune(w),
        out=dict(o.items()),
        log=log,
        trajectory_path=i.get("trajectory"),
    )
    write_checkpoint_outputs(o.model, i.data, p.inference["batch_size"], device, o.outputs, log)
