"""The pipeline's stages as plain functions, one module per Snakemake rule family, so that each
rule's code hash (pwprune.provenance) covers exactly the code that it runs. Workflow scripts only
unpack `snakemake` objects and call these; every stage can also be run (and tested) without
Snakemake.

    jobs        job plumbing shared by every stage: log, threads/seed/device, atomic writers
    inputs      prepared data -> loaders, losses, teachers, the training loop's call
    prepare     raw dataset -> prepared arrays
    train       prepared data -> dense checkpoint + teacher outputs
    prune       dense checkpoint -> pruned checkpoint at one MAC target
    finetune    pruned checkpoint -> fine-tuned checkpoint
    evaluate    any checkpoint -> its per-group metrics
    aggregate   per-checkpoint metrics -> the tidy table
    figures     tidy table -> figures
    report      tidy table -> summaries

Every output is written to a temporary name and moved into place, so a job killed half-way
leaves nothing that a later run could take for a finished result.
"""
