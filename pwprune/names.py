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
# the paper's order: data-free methods first; then the group-aware baselines (docs/fair-baselines.md)
METHODS = ("random", "magnitude", "taylor", "autobot", "fairgrape", "fairprune")
# the methods that use group labels while choosing channels; the rest are the plain methods
GROUP_AWARE_METHODS = ("fairgrape", "fairprune")
# These methods use no data while choosing channels, so the pruning-phase loss is moot:
# one pruned checkpoint serves every label.
DATA_FREE_METHODS = ("random", "magnitude")
# how far the achieved MAC reduction may lie from the target (prune.tolerance's default)
PRUNE_TOLERANCE = 0.02
# what pruning acts on and which MACs a target counts (prune.layers; pruning.graph)
LAYER_SCOPES = ("all", "conv")
# what pruning removes in a model with attention (prune.transformer; pwprune.attention): whole heads,
# head dimensions (every head the same), the MLP's hidden widths (every group outside attention but
# the residual stream), or all three; the residual stream (embedding width) always stays whole
TRANSFORMER_SCOPES = ("all", "heads", "head_dims", "mlp")
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
# Fine-tuning baselines from the fair-pruning literature (issue 14), label -> (pruning-phase loss,
# fine-tuning loss) like LOSS_LABELS. Not PW ablations: the ablation grid does not run them; an
# experiment runs them only where its `losses` lists them. ceag: CEAG constrained fine-tuning
# (Hashemizadeh et al., ICLR 2024; pwprune.ceag) after pruning with plain CE.
BASELINE_LABELS = {"ceag": ("ce", "ceag")}
# the fine-tuning losses (the floss wildcard): the PW family and the baselines' own
FINETUNE_LOSSES = (*LOSS_KINDS, *(f for _, f in BASELINE_LABELS.values() if f not in LOSS_KINDS))
# what an experiment's `losses` may list
EXPERIMENT_LOSS_LABELS = (*MAIN_LABELS, *BASELINE_LABELS)
# CEAG's defaults (an experiment's `ceag` section): the tolerance epsilon on each group's excess
# accuracy drop (the authors' FairFace/UTKFace setting) and the multipliers' SGD step size (theirs)
CEAG_EPSILON = 0.01
CEAG_DUAL_LR = 0.01

# ---- training loops (train / finetune)
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "multistep", "none")
ON_DIVERGENCE = ("raise", "degenerate")
# the arithmetic of training (an experiment's `precision`): fp32, or autocast to bf16 / fp16
PRECISIONS = ("fp32", "bf16", "fp16")

# ---- data and models
DATASET_KINDS = ("digits", "cifar10", "celeba", "fitzpatrick17k", "images_csv")
# the pipeline's own models (pwprune.models); every other name is a torchvision classifier
OWN_MODELS = ("small_cnn", "resnet20", "resnet56", "resnet20_a", "resnet56_a")


def _torchvision_classifiers() -> tuple[str, ...]:
    """torchvision's classification registry, list_models(module=torchvision.models), read from
    the installed package's source (its @register_model() functions in torchvision/models/*.py)
    in ~5 ms: importing torchvision costs seconds, and the Snakefile imports this module at
    start-up. tests/test_model_families.py holds it equal to list_models."""
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.origin:
        return ()
    pattern = re.compile(r"^@register_model\(\)\s*\n(?:@.*\n)*def (\w+)", re.M)
    files = (Path(spec.origin).parent / "models").glob("*.py")
    return tuple(sorted(n for f in files for n in pattern.findall(f.read_text(encoding="utf-8"))))


TORCHVISION_CLASSIFIERS = _torchvision_classifiers()
# torchvision families that the pruning graph (Torch-Pruning's DependencyGraph, pwprune.pruning.graph)
# cannot prune to a MAC target: name prefix -> why. Refused at config validation, with the reason.
REFUSED_MODEL_FAMILIES = {
    "shufflenet_v2_": (
        "ShuffleNetV2's channel shuffle (a reshape that interleaves channels) breaks Torch-Pruning's "
        "dependency graph while it is built (ZeroDivisionError in its reshape index mapping)"
    ),
    "maxvit_": (
        "MaxViT's block and grid attention (RelativePositionalMultiHeadAttention) adds a relative position "
        "bias table with one column per head, which no head pruning here cuts, and its input size is fixed "
        "when it is built (a multiple of 224 px)"
    ),
}
REFUSED_MODELS = {
    n: why for n in TORCHVISION_CLASSIFIERS for prefix, why in REFUSED_MODEL_FAMILIES.items() if n.startswith(prefix)
}
MODEL_NAMES = OWN_MODELS + tuple(n for n in TORCHVISION_CLASSIFIERS if n not in REFUSED_MODELS)
# Model families whose training has no deterministic kernel on CUDA: name prefix -> the operation.
# Their pool is adaptive and not global (output not 1x1); torch computes a 1x1 adaptive pool as a
# mean, but any other size's CUDA backward (adaptive_avg_pool2d_backward_cuda) adds with atomics,
# and deterministic mode stops there. Config validation refuses them under `deterministic: true`
# where the device can be CUDA (pwprune.config). tests/test_gpu_paths.py builds every model of
# MODEL_NAMES on the meta device and holds this table equal to the pools their forward passes call.
CUDA_NONDETERMINISTIC_FAMILIES = {
    "vgg": "pools its features to 7x7 with AdaptiveAvgPool2d((7, 7))",
    "alexnet": "pools its features to 6x6 with AdaptiveAvgPool2d((6, 6))",
}
CUDA_NONDETERMINISTIC_MODELS = {
    n: why for n in MODEL_NAMES for prefix, why in CUDA_NONDETERMINISTIC_FAMILIES.items() if n.startswith(prefix)
}
PRETRAINED_CHOICES = ("none", "imagenet")
# `model: timm/<name>`: any timm classifier by its registry name (timm.list_models()), built with
# timm.create_model; checked against the installed timm at config validation (pwprune.models)
TIMM_PREFIX = "timm/"
# layers inside a model that pwprune cannot prune, by their class (module.qualname) -> why; a model
# holding one is refused before any work, by config validation (timm names) and pwprune.compress
# alike (pwprune.models.refusal). A module with an int `num_heads` of any other attention class is
# refused too: only timm's plain Attention and torchvision's ViT and Swin attention are pruned by head.
REFUSED_MODULES = {
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": REFUSED_MODEL_FAMILIES["maxvit_"],
    "torchvision.models.shufflenetv2.InvertedResidual": REFUSED_MODEL_FAMILIES["shufflenet_v2_"],
    "timm.models.swin_transformer.WindowAttention": (
        "timm's Swin window attention adds a relative position bias table with one column per head to the "
        "attention scores, and Torch-Pruning's graph ties that table's columns to the head dimensions "
        "through the scores' sum, so removing head dimensions would cut the wrong columns"
    ),
    "torch.nn.modules.activation.MultiheadAttention": (
        "nn.MultiheadAttention ties its heads to its embedding width (the residual stream) inside one "
        "in_proj weight; pwprune prunes it only inside torchvision's ViT, whose attention it rewrites as "
        "separate qkv and proj layers (pwprune.models.SelfAttention)"
    ),
}

# ---- figures (pwprune.plots draws them; workflow/rules/report.smk asks for them)
FIGURES = ("group_performance", "fairness_gap", "tradeoff", "comparison", "ablation", "loss_shares", "convergence")
ABLATION_FIGURE = "ablation"  # drawn from the ablation table, by its own rule
MAIN_FIGURES = tuple(f for f in FIGURES if f != ABLATION_FIGURE)
