from pwprune.pipeline import job_log, setup, train_dense_stage

with job_log(snakemake.log[0]) as log:
    p = snakemake.params
    device = setup(snakemake.threads, p.device, p.seed)
    train_dense_stage(snakemake.input.data, p.model, p.train, p.evaluate, p.seed, device, p.context,
                      out=dict(snakemake.output.items()), log=log, pretrained=p.pretrained)
