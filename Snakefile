# pwprune: train -> prune -> fine-tune (CE | PW); evaluate every checkpoint per group -> figures.
#   snakemake --cores 8 results/figures/all            the whole grid of the active experiments
#   snakemake --cores 8 results/ablation/all           the PW-loss ablations
#   snakemake --profile profiles/slurm results/figures/all
# params.yaml is the one configuration (validated at start-up); see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/diagnose.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    input:
        "results/figures/all",
    default_target: True
