from pwprune.outputs import write_checkpoint_outputs
from pwprune.stages import labels
from pwprune.stages.finetune import finetune_stage
from pwprune.stages.inputs import deterministic_ops, resume_state, setup
from pwprune.stages.jobs import job_log

with (
    job_log(snakemake.log[0], exit_when_done=True) as log,
    deterministic_ops(f"experiments.{snakemake.wildcards.exp}.deterministic"),
):
    p, w, i, o = snakemake.params, snakemake.wildcards, snakemake.input, snakemake.output
    device = setup(p.numerics, snakemake.threads, p.device, p.seed, log)
    resume = resume_state(o.model, dict(p.items()), i, snakemake.resources.resume_minutes)
    finetune_stage(
        i.data,
        i.pruned,
        i.dense,
        i.teacher,
        p.finetune,
        p.seed,
        device,
        labels.finetune(w),
        out=dict(o.items()),
        log=log,
        numerics=p.numerics,
        resume=resume,
    )
    write_checkpoint_outputs(o.model, i.data, p.inference["batch_size"], device, o.outputs, log)
