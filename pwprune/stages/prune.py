"""Dense checkpoint (+ teacher outputs for data-driven methods) -> pruned checkpoint at one
MAC-reduction target, channels physically removed, and what the pruning achieved (prune.json).
Its metrics come from the evaluate stage."""

from __future__ import annotations

import time

from pwprune.stages.inputs import load_data, make_loss, make_teacher, train_loader
from pwprune.stages.jobs import write_json


def prune_model(
    model, arch, prune, seed, device, context, prepared=None, teacher=None, log=print, trajectory=None, example=None
):
    """The prune stage's work in memory: `model` (the dense model, pruned in place but for Taylor's
    "authors" schedule) to `prune["target"]` with `prune["method"]` -> (PruneResult, seconds).
    prepared: the data (pwprune.data.Prepared or anything with its meta and splits), read only
    by a data-driven method (`prune["loss"]` not "none"), which also needs `teacher` (the dense
    model's outputs, stages.inputs.make_teacher). trajectory: a loaded Taylor trajectory to
    continue. example: the (1, C, H, W) input to trace and count MACs with (default: the arch's).
    The prune stage and pwprune.api.compress both call it."""
    from pwprune.models import example_input
    from pwprune.pruning import prune_to_target

    kwargs = {}
    if prune["loss"] != "none":
        augment = prune.get("augment", False)
        kwargs = dict(
            loader=train_loader(prepared, prune["batch_size"], seed, augment, arch=arch, device=device),
            loss_fn=make_loss(prune["loss"], prune.get("pw")),
            teacher=teacher,
        )
        log(f"{context}: pruning loss {kwargs['loss_fn']!r}, teacher {type(kwargs['teacher']).__name__}")
    if trajectory is not None:
        kwargs["trajectory"] = trajectory
    t0 = time.perf_counter()
    result = prune_to_target(
        model,
        prune["method"],
        prune["target"],
        (example_input(arch) if example is None else example).to(device),
        device=device,
        seed=seed,
        tolerance=prune.get("tolerance", 0.02),
        log=log,
        layers=prune.get("layers", "all"),
        transformer=prune.get("transformer", "all"),
        **kwargs,
        **prune.get("options", {}),
    )
    return result, time.perf_counter() - t0


def prune_stage(data_dir, dense_path, teacher_path, prune, seed, device, context, out, log=print, trajectory_path=None):
    """out: dict with model and info paths. `prune` holds method, target, tolerance, layers,
    options, loss (and batch_size/augment/pw for data-driven methods). trajectory_path: the
    pruned checkpoint of the next smaller target, whose Taylor trajectory this job continues
    (taylor, schedule "authors"); the checkpoint written here then holds the trajectory too.
    The work itself is prune_model's."""
    from pwprune.checkpoint import load_checkpoint, save_checkpoint

    model, info = load_checkpoint(dense_path, device=device)
    arch = info["arch"]
    prepared = teacher = trajectory = None
    if prune["loss"] != "none":
        prepared = load_data(data_dir)
        teacher = make_teacher(prune.get("augment", False), model, teacher_path, device)
    if trajectory_path is not None:
        from pwprune.pruning.trajectory import load_state

        trajectory = load_state(trajectory_path)
    result, seconds = prune_model(
        model, arch, prune, seed, device, context, prepared, teacher, log=log, trajectory=trajectory
    )
    log(
        f"{context}: achieved {result.achieved_reduction:.4f} MAC reduction (target {prune['target']}) "
        f"in {seconds:.1f} s; {result.note or ''}"
    )
    write_json(
        out["info"],
        {
            "method": prune["method"],
            "target_reduction": prune["target"],
            "achieved_reduction": result.achieved_reduction,
            "within_tolerance": bool(result.within_tolerance),
            "note": result.note,
            "macs_before": result.macs_before,
            "macs_after": result.macs_after,
            "params_before": result.params_before,
            "params_after": result.params_after,
            # achieved_reduction and macs_* are in this count (all: every layer, conv:
            # full convolutions only); total_*: every layer's MACs, whatever the count
            "counted_layers": result.counted_layers,
            "total_macs_before": result.total_macs_before,
            "total_macs_after": result.total_macs_after,
            "total_reduction": 1.0 - result.total_macs_after / result.total_macs_before,
            "seconds": seconds,
            "continued_from": str(trajectory_path) if trajectory_path else None,
        },
    )
    save_checkpoint(
        out["model"],
        result.model,
        arch,
        history=result.history,
        meta={
            "stage": "pruned",
            "seed": seed,
            "achieved_reduction": result.achieved_reduction,
            "counted_layers": result.counted_layers,
        },
        trajectory=result.trajectory,
    )
