"""Prepared data -> dense (baseline) checkpoint, its training history, and the teacher outputs
that the PW loss reuses. Its metrics come from the evaluate stage."""

from __future__ import annotations

from pwprune.stages.inputs import dense_teacher_logits, fit, load_data, make_loss, save_tensor
from pwprune.stages.jobs import write_json


def train_dense_stage(
    data_dir,
    model_name,
    loop,
    seed,
    device,
    context,
    out,
    log=print,
    pretrained="none",
    teacher_batch_size=256,
    numerics=None,
    resume=None,
    model_options=None,
):
    """out: dict with model, history, teacher paths. pretrained: "none" | "imagenet"
    (torchvision's ImageNet weights from the local hub cache, new head; models.build_model) | a
    timm model's local weights file (the config's pretrained_file).
    numerics: the job's numerics param (its precision and memory layout reach the training
    loop); resume: its resume state (stages.inputs.resume_state), removed once the outputs are
    written."""
    from pwprune.checkpoint import save_checkpoint
    from pwprune.environment import numeric_environment
    from pwprune.models import arch_dict, build_model

    prepared = load_data(data_dir)
    meta = prepared.meta
    arch = arch_dict(
        model_name, meta["num_classes"], meta["in_channels"], meta["input_size"], pretrained, options=model_options
    )
    model = build_model(
        model_name,
        meta["num_classes"],
        meta["in_channels"],
        meta["input_size"],
        pretrained=pretrained,
        options=model_options,
    ).to(device)
    log(
        f"{context}: {model_name} ({_weights_said(pretrained)}) "
        f"on {meta['name']} ({len(prepared.splits['train'].y)} training samples)"
    )
    numerics = numerics or {}
    history = fit(
        model,
        prepared,
        loop,
        make_loss("ce", None),
        None,
        seed,
        device,
        context,
        log,
        arch=arch,
        numerics=numerics,
        resume=resume,
    )
    if history and history[-1].get("diverged"):  # on_divergence: degenerate; no dense, no trial
        raise RuntimeError(f"{context}: the dense model diverged; lower train.lr (now {loop['lr']})")
    logits = dense_teacher_logits(model, prepared, seed, arch, device, teacher_batch_size)
    save_tensor(out["teacher"], logits)
    write_json(out["history"], history)
    save_checkpoint(
        out["model"],
        model,
        arch,
        history=[],
        meta={
            "stage": "dense",
            "seed": seed,
            "pretrained": pretrained,
            "achieved_reduction": 0.0,
            "counted_layers": "all",
            "environment": numeric_environment(device, numerics.get("precision", "fp32")),
        },
    )
    if resume is not None:
        resume.clear()


def _weights_said(pretrained):
    if pretrained in (None, "none"):
        return "random init"
    return "ImageNet weights" if pretrained == "imagenet" else f"weights of {pretrained}"
