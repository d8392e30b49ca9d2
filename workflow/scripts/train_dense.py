from pwprune.outputs import write_checkpoint_outputs
from pwprune.stages import labels
from pwprune.stages.inputs import deterministic_ops, resume_state, setup
from pwprune.stages.jobs import job_log
from pwprune.stages.train import train_dense_stage

with (
    job_log(snakemake.log[0], exit_when_done=True) as log,
    deterministic_ops(f"experiments.{snakemake.wildcards.exp}.deterministic"),
):
    p, w, o = snakemake.params, snakemake.wildcards, snakemake.output
    device = setup(p.numerics, snakemake.threads, p.device, p.seed, log)
    resume = resume_state(o.model, dict(p.items()), snakemake.input, snakemake.resources.resume_minutes)
    train_dense_stage(
        snakemake.input.data,
        p.model,
        p.train,
        p.seed,
        device,
        labels.train_dense(w),
        out=dict(o.items()),
        log=log,
        pretrained=p.pretrained,
        model_options=p.model_options,
        numerics=p.numerics,
        resume=resume,
    )
    write_checkpoint_outputs(o.model, snakemake.input.data, p.inference["batch_size"], device, o.outputs, log)
