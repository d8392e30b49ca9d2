"""Pruned checkpoint + loss (ce | pw | ablations | ceag) -> fine-tuned checkpoint, its history, and the
per-epoch share of the loss on each label x group cell. Its metrics come from the evaluate
stage."""

from __future__ import annotations

from pwprune.stages.inputs import fit, load_data, make_loss, make_teacher
from pwprune.stages.jobs import write_json, write_rows

# The job's convergence verdicts become warning lines in its log and nothing else (history.json is
# fit's), so the convergence criterion is left out of this stage's code hash
# (pwprune.provenance): editing the summary's convergence tables reruns the aggregation and the
# summary, not every fine-tuning. A test holds every use to the log.
LOG_ONLY_IMPORTS = ("pwprune.convergence",)


def make_ceag_loss(prepared, teacher, settings):
    """CEAG's Lagrangian (pwprune.ceag.CEAGLoss) over the data's groups; with the cached teacher its
    dense baseline is the dense model's accuracy over the whole training split, overall and per
    group (the authors' precomputed baseline); with the frozen one (augmented data) each batch's."""
    import numpy as np
    import torch

    from pwprune.ceag import CEAGLoss
    from pwprune.loss import CachedTeacher

    loss_fn = CEAGLoss(len(prepared.meta["group_names"]), **(settings or {}))
    if isinstance(teacher, CachedTeacher):
        train = prepared.splits["train"]
        y, g = torch.tensor(np.asarray(train.y), dtype=torch.long), torch.tensor(np.asarray(train.g), dtype=torch.long)
        if teacher.logits.shape[0] != len(y):
            raise ValueError(
                f"teacher outputs have {teacher.logits.shape[0]} rows but the training split has "
                f"{len(y)} samples; delete the teacher file and rerun the dense training job"
            )
        loss_fn.set_baseline(teacher.logits.cpu(), y, g)
    return loss_fn


def finetune_model(
    model, prepared, finetune, teacher, seed, device, context, log=print, arch=None, numerics=None, resume=None
):
    """The fine-tuning stage's work in memory: train `model` in place with `finetune`'s loop and
    loss (ce, the PW family with `pw`, or ceag with `ceag`) on prepared's train split -> its history
    (pwprune.train.fit's). teacher: the dense model's outputs (stages.inputs.make_teacher), needed
    by every loss but ce. The fine-tuning stage and pwprune.api.compress both call it."""
    if finetune["loss"] == "ceag":
        loss_fn = make_ceag_loss(prepared, teacher, finetune.get("ceag"))
    else:
        loss_fn = make_loss(finetune["loss"], finetune.get("pw"))
    log(f"{context}: fine-tuning loss {loss_fn!r}, teacher {type(teacher).__name__ if teacher else 'none'}")
    return fit(
        model,
        prepared,
        finetune["loop"],
        loss_fn,
        teacher,
        seed,
        device,
        context,
        log,
        arch=arch,
        numerics=numerics or {},
        resume=resume,
    )


def loss_shares(history, meta):
    """The history's per-epoch loss shares with each label x group cell by its names (meta's
    class_names, group_names), as every table and figure shows them; history keeps the ids."""
    cls, grp = meta["class_names"], meta["group_names"]
    return [
        {"epoch": h["epoch"], **s, "label": cls[s["label"]], "group": grp[s["group"]]}
        for h in history
        for s in h.get("loss_shares", [])
    ]


def finetune_stage(
    data_dir,
    pruned_path,
    dense_path,
    teacher_path,
    finetune,
    seed,
    device,
    context,
    out,
    log=print,
    numerics=None,
    resume=None,
):
    """out: dict with model, shares, history paths. `finetune` holds loop, loss, pw. A run that
    diverges keeps the pruned weights and says so in its checkpoint's meta (`diverged`), which the
    evaluate stage turns into a degenerate trial. numerics, resume: as train_dense_stage's. The
    training itself is finetune_model's."""
    from pwprune.checkpoint import load_checkpoint, save_checkpoint
    from pwprune.environment import numeric_environment

    prepared = load_data(data_dir)
    model, info = load_checkpoint(pruned_path, device=device)
    pruned_meta = info["meta"]
    loop = finetune["loop"]
    teacher = None
    if finetune["loss"] != "ce":
        augment = loop.get("augment", False)
        # only the frozen (on-the-fly) teacher needs the dense weights; the cached one reads logits
        dense = load_checkpoint(dense_path, device=device)[0] if augment else None
        teacher = make_teacher(augment, dense, teacher_path, device)
    numerics = numerics or {}
    history = finetune_model(
        model,
        prepared,
        finetune,
        teacher,
        seed,
        device,
        context,
        log,
        arch=info["arch"],
        numerics=numerics,
        resume=resume,
    )
    shares = loss_shares(history, prepared.meta)
    diverged = bool(history and history[-1].get("diverged"))
    if diverged:
        # Recorded as a degenerate trial; the non-finite weights are never saved: the checkpoint
        # keeps the pruned weights and says so in its metadata.
        log(f"{context}: fine-tuning diverged; recording the trial as degenerate")
        model, _ = load_checkpoint(pruned_path, device=device)
    if not diverged:
        from pwprune.convergence import group_verdicts, warnings

        for line in warnings(group_verdicts(history), context):
            log(line)
    write_json(out["history"], history)
    write_rows(out["shares"], shares, ["epoch", "label", "group", "share"])
    save_checkpoint(
        out["model"],
        model,
        info["arch"],
        history=info["history"],
        meta={
            "stage": "finetuned",
            "diverged": diverged,
            "seed": seed,
            "achieved_reduction": pruned_meta["achieved_reduction"],
            "counted_layers": pruned_meta.get("counted_layers", "all"),
            "environment": numeric_environment(device, numerics.get("precision", "fp32")),
        },
    )
    if resume is not None:
        resume.clear()
