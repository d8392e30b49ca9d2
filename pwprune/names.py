"""Every name and default that more than one part of the pipeline spells, defined once.

The config schema (workflow/schemas/params.schema.yaml) names these registries instead of
listing them (`x-enum: METHODS`, `x-default: PRUNE_TOLERANCE`, `x-properties: {names: METHODS,
...}`; pwprune.config.load_schema resolves them), the Snakefile builds its wildcard constraints
and figure list from them, and the code checks its arguments against them.

Plain tuples and dicts only: no torch, matplotlib or pandas, since the Snakefile imports this at
start-up and a dry run must stay fast.
"""

from __future__ import annotations

# ---- pruning
# the paper's order: data-free methods first
METHODS = ("random", "magnitude", "taylor", "autobot")
# These methods use no data while choosing channels, so the pruning-phase loss is moot:
# one pruned checkpoint serves every label.
DATA_FREE_METHODS = ("random", "magnitude")
# how far the achieved MAC reduction may lie from the target (prune.tolerance's default)
PRUNE_TOLERANCE = 0.02
# what pruning acts on and which MACs a target counts (prune.layers; pruning.graph)
LAYER_SCOPES = ("all", "conv")
MAGNITUDE_NORMS = (1, 2)
TAYLOR_SCHEDULES = ("geometric", "authors")
TAYLOR_SITES = ("norm", "conv")
RESTORE_WEIGHTS = ("never", "always", "authors")
AUTOBOT_FLOP_LOSSES = ("symmetric", "asymmetric")
AUTOBOT_MODES = ("eval", "train")
AUTOBOT_KEEPS = ("last", "best", "authors")
AUTOBOT_PLAIN_TARGETS = ("labels", "teacher")
AUTOBOT_SEARCHES = ("nearest", "threshold")

# ---- losses
# what pwprune.loss.make_loss builds
LOSS_KINDS = ("ce", "pw", "pw_weight", "pw_correct")
# the pruning-phase loss of a path (the ploss wildcard): "none" for the data-free methods
PRUNE_LOSSES = ("none", *LOSS_KINDS)
# A comparison label -> (loss kind in the pruning phase, loss kind in fine-tuning).
# ce/pw are the paper's main comparison; the rest are its ablations.
LOSS_LABELS = {
    "ce": ("ce", "ce"),
    "pw": ("pw", "pw"),
    "pw_weight": ("pw_weight", "pw_weight"),  # sample weighting only
    "pw_correct": ("pw_correct", "pw_correct"),  # target correction only
    "pw_prune_only": ("pw", "ce"),
    "pw_finetune_only": ("ce", "pw"),
}
# an experiment's `losses` (the main comparison)
MAIN_LABELS = ("ce", "pw")
# the ablation grid runs every label
ABLATION_LABELS = tuple(LOSS_LABELS)
# the labels only the ablation runs
ABLATION_ONLY_LABELS = tuple(l for l in ABLATION_LABELS if l not in MAIN_LABELS)

# ---- training loops (train / finetune)
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "multistep", "none")
ON_DIVERGENCE = ("raise", "degenerate")
# the arithmetic of training (an experiment's `precision`): fp32, or autocast to bf16 / fp16
PRECISIONS = ("fp32", "bf16", "fp16")

# ---- data and models
DATASET_KINDS = ("digits", "cifar10", "celeba", "fitzpatrick17k")
MODEL_NAMES = (
    "small_cnn",
    "resnet20",
    "resnet56",
    "resnet20_a",
    "resnet56_a",
    "resnet18",
    "resnet34",
    "vgg16",
    "efficientnet_v2_s",
    "efficientnet_v2_m",
)
PRETRAINED_CHOICES = ("none", "imagenet")

# ---- figures (pwprune.plots draws them; workflow/rules/report.smk asks for them)
FIGURES = ("group_performance", "fairness_gap", "tradeoff", "ablation", "loss_shares")
ABLATION_FIGURE = "ablation"  # drawn from the ablation table, by its own rule
MAIN_FIGURES = tuple(f for f in FIGURES if f != ABLATION_FIGURE)
