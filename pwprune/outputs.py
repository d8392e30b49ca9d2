"""A checkpoint's outputs: everything a metric needs, written once by the job that has the model in
memory, read by every metric without the model (as fairlearn's MetricFrame takes predictions, not
models). One file format, defined here only: an .npz beside the checkpoint, loaded without pickles.

Per evaluation split (`eval_splits` of the prepared data, "test" first):
    <split>.logits   float32, (N,) for a single-logit (binary) model, else (N, C)
    <split>.y        int64 labels          <split>.g   int64 group ids
and, about the checkpoint:
    splits, group_names (str), groups_are_classes, stage ("dense" | "pruned" | "finetuned"),
    achieved_reduction (in the pruning's count), counted_layers, environment (the one-line numeric
    environment that made the checkpoint), diverged (a fine-tuning that diverged: its rows are
    degenerate), macs and params (per sample, every layer, on the arch's example input), format.

Reading needs numpy only: the metrics, aggregation and bootstrap jobs never import torch.
"""

from __future__ import annotations

FORMAT = 1
SCALARS = (
    "groups_are_classes",
    "stage",
    "achieved_reduction",
    "counted_layers",
    "environment",
    "diverged",
    "macs",
    "params",
)


def model_outputs(model, prepared, arch, batch_size, device, example=None):
    """The outputs dict (read_outputs' shape, meta keys left to the caller) of `model` on every
    evaluation split of `prepared`, and its MACs and parameters on `example` (default: the arch's
    example input, pwprune.models.example_input)."""
    from pwprune.inference import count_macs_params, predict
    from pwprune.models import example_input
    from pwprune.stages.inputs import eval_loader

    example = example_input(arch) if example is None else example
    macs, params = count_macs_params(model, example)
    splits = {}
    for split in list(prepared.meta.get("eval_splits") or ["test"]):
        logits, labels, groups = predict(model, eval_loader(prepared, split, batch_size, arch, device), device)
        splits[split] = {"logits": logits.numpy(), "y": labels.numpy(), "g": groups.numpy()}
    return {
        "splits": splits,
        "group_names": [str(n) for n in prepared.meta["group_names"]],
        "groups_are_classes": bool(prepared.meta.get("groups_are_classes", False)),
        "macs": macs,
        "params": params,
    }


def checkpoint_outputs(checkpoint_path, data_dir, batch_size, device, log=print):
    """A saved checkpoint -> its outputs dict, the model loaded from the file exactly as any later
    reader would load it (weights only), so the outputs are the checkpoint's, not those of the
    in-memory model that wrote it (same numbers, but no doubt about train mode or precision)."""
    from pwprune.checkpoint import CheckpointError, load_checkpoint
    from pwprune.environment import environment_id
    from pwprune.stages.inputs import load_data

    model, info = load_checkpoint(checkpoint_path, device=device)
    meta = info["meta"]
    missing = [k for k in ("stage", "achieved_reduction") if k not in meta]
    if missing:
        raise CheckpointError(
            f"{checkpoint_path}: its meta lacks {', '.join(missing)}; it was not written by this pipeline "
            "version: delete it and rerun the job that produces it"
        )
    out = model_outputs(model, load_data(data_dir), info["arch"], batch_size, device)
    out.update(
        stage=meta["stage"],
        achieved_reduction=float(meta["achieved_reduction"]),
        counted_layers=meta.get("counted_layers", "all"),
        environment=environment_id(meta.get("environment")),
        diverged=bool(meta.get("diverged")),
    )
    test = out["splits"][next(iter(out["splits"]))]
    log(
        f"[{out['stage']}] outputs on {', '.join(out['splits'])} ({len(test['y'])} test samples), "
        f"{out['macs'] / 1e6:.3f} MMACs, {out['params']} params"
    )
    return out


def write_checkpoint_outputs(checkpoint_path, data_dir, batch_size, device, path, log=print):
    """checkpoint_outputs -> `path` (the stage jobs call it right after saving their checkpoint)."""
    out = checkpoint_outputs(checkpoint_path, data_dir, batch_size, device, log)
    write_outputs(path, out)
    return out


def write_outputs(path, outputs):
    """An outputs dict -> `path`, atomically (a killed job leaves no half-written file)."""
    import numpy as np

    from pwprune.fileio import atomic_open

    arrays = {}
    for s, v in outputs["splits"].items():
        arrays[f"{s}.logits"] = np.asarray(v["logits"], dtype=np.float32)
        arrays[f"{s}.y"] = np.asarray(v["y"], dtype=np.int64)
        arrays[f"{s}.g"] = np.asarray(v["g"], dtype=np.int64)
    scalars = {k: np.asarray(outputs[k]) for k in SCALARS}
    with atomic_open(path, "wb") as f:
        np.savez(
            f,
            format=FORMAT,
            splits=np.array(list(outputs["splits"]), dtype=str),
            group_names=np.array(outputs["group_names"], dtype=str),
            **scalars,
            **arrays,
        )


def read_outputs(path):
    """write_outputs' file -> the outputs dict; refuses a file of another format with the fix."""
    import numpy as np

    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(
            f"{path}: cannot read model outputs ({e}); delete it and rerun the job that produces it"
        ) from None
    with z:
        if "format" not in z.files or int(z["format"]) != FORMAT:
            raise ValueError(
                f"{path}: not a pwprune outputs file of format {FORMAT}; delete it and rerun the job that produces it"
            )
        splits = [str(s) for s in z["splits"]]
        out = {
            "splits": {s: {k: z[f"{s}.{k}"] for k in ("logits", "y", "g")} for s in splits},
            "group_names": [str(n) for n in z["group_names"]],
        }
        for k in SCALARS:
            v = z[k].item()
            out[k] = str(v) if isinstance(v, str) else v
        out["groups_are_classes"] = bool(out["groups_are_classes"])
        out["diverged"] = bool(out["diverged"])
        return out
