"""Taylor pruning as the authors' code runs it: one long trajectory of small steps that serves
every target, each larger target continuing from the state at the smaller one.

The trajectory (schedule "authors" of the taylor method) alternates plain training with pruning:

    every batch:                 one SGD step on the pruning loss (CE or PW), model in train mode
    after every B-th batch:      if the MACs left are at or under the target, stop (a snapshot);
                                 else score the channels on that same batch in eval mode
                                 (|sum of activation x gradient|, ranked globally across layers
                                 without normalisation) and remove the P lowest-scored ones

The score is measured at opts["site"]: "norm" (the BN outputs, layout.sites) or "conv" (the conv
outputs before BN, where the authors' hooks sit: pruner.py:313-324, 398-399). The 0/1 masks stay at
the BN outputs either way, so the masked model computes what the pruned one will.

(robbiemeyer/pw_loss_pruning, prune/pruner.py TaylorPrune.prune: `counter % self.batches`, with
self.batches = --tay_batches + 1, so their --tay_batches 4 is B = 5 here.)

Channels are removed by 0/1 gates on the dense-shaped model while the trajectory runs, as the
authors' masks do; a snapshot is made physical (Torch-Pruning surgery on a copy) only when a
target is reached. The state at a target (dense-shaped weights, removed channels, batches
consumed, optimiser buffers) is plain data (`save_state` / `load_state`, weights_only loading),
and the data stream is a pure function of (seed, batch number): batch n has the same samples and
the same random draws (augmentation, dropout) whether the trajectory started at batch 0 or was
resumed at batch n. Continuing from a saved target therefore gives bit for bit what one
uninterrupted trajectory gives at the larger target.
"""

from __future__ import annotations

import copy
import math

import torch

from pwprune.fileio import atomic_open

from .graph import Layout, apply_plan, build_graph
from .importance import ChannelHooks, taylor_sites
from .loop import forward_loss

FORMAT = "pwprune-taylor-trajectory"
VERSION = 1
PROGRESS_STEPS = 50  # a progress line every this many pruning steps


def _mix(*ints) -> int:
    """A 63-bit seed from a tuple of ints (splitmix64 steps), so nearby tuples seed unrelated streams."""
    x = 0x9E3779B97F4A7C15
    for v in ints:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def seeded_batches(dataset, batch_size, seed, start=0):
    """Yield (batch number, batch) from `start` on, forever. Pass p shuffles the dataset with its
    own seeded permutation; before fetching batch n the global RNG is seeded from (seed, n), so
    augmentation and dropout draws depend only on the batch number."""
    n = len(dataset)
    if n == 0:
        raise ValueError("the training split is empty; data-driven pruning needs training data")
    per_pass = math.ceil(n / batch_size)
    unbatched = getattr(dataset, "augment", True) is not False
    b, cached = int(start), (None, None)
    while True:
        p, i = divmod(b, per_pass)
        if cached[0] != p:
            cached = (p, torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, 1, p))))
        idx = cached[1][i * batch_size : (i + 1) * batch_size]
        torch.manual_seed(_mix(seed, 2, b))
        if unbatched:  # per-sample draws (augmentation), collated as a DataLoader would
            batch = torch.utils.data.default_collate([dataset[int(j)] for j in idx])
        else:
            batch = dataset[idx.tolist()]
        yield b, batch
        b += 1


def _settings(layout, batch_size, seed, opts, loss_fn):
    return {
        "groups": [[k, int(n)] for k, n in layout.groups],
        "batch_size": int(batch_size),
        "seed": int(seed),
        "batches_per_step": int(opts["batches_per_step"]),
        "prunes_per_step": int(opts["prunes_per_step"]),
        "lr": float(opts["lr"]),
        "momentum": float(opts["momentum"]),
        "min_channels": int(opts["min_channels"]),
        "site": opts.get("site", "norm"),
        "layers": layout.layers,
        "loss": repr(loss_fn),
    }


def taylor_trajectory(
    model,
    targets,
    example_inputs,
    *,
    dataset,
    batch_size,
    loss_fn,
    teacher=None,
    device="cpu",
    seed=0,
    opts,
    resume=None,
    log=print,
):
    """Run the trajectory on `model` (dense-shaped, modified in place: its weights take the SGD
    steps) until each of `targets` (fractions of MACs removed, ascending) is reached.

    resume: a state from an earlier call (load_state) to continue from; it must come from the
    same model, data order, loss and options. Returns one snapshot per target, each a dict:
    target, reduction (estimated), removed (flat bool mask over the layout), batches, note, and
    state (the plain-data state to save and resume from)."""
    targets = [float(t) for t in targets]
    if targets != sorted(targets):
        raise ValueError(f"targets must be ascending, got {targets}")
    B, P = int(opts["batches_per_step"]), int(opts["prunes_per_step"])
    if B < 1 or P < 1:
        raise ValueError(f"taylor options batches_per_step and prunes_per_step must be >= 1, got {B}, {P}")
    if opts.get("normalise"):
        raise ValueError(
            "the authors' Taylor trajectory ranks raw scores globally (pruner.py:333-335); normalise must be false"
        )
    device = torch.device(device)
    ex = example_inputs.to(device)
    DG = build_graph(model, ex)
    layout = Layout(model, DG, ex, layers=opts.get("layers", "all"))  # what is pruned and counted (graph.py)
    settings = _settings(layout, batch_size, seed, opts, loss_fn)
    opt = torch.optim.SGD(model.parameters(), lr=float(opts["lr"]), momentum=float(opts["momentum"]))
    removed = torch.zeros(layout.total, dtype=torch.bool)
    count = 0
    if resume is not None:
        saved = {"site": "norm", "layers": "all", **resume["settings"]}  # states from before these options
        diff = [k for k in settings if saved.get(k) != settings[k]]
        if diff:
            raise ValueError(
                "cannot continue this Taylor trajectory: its saved state was made with other "
                + "; ".join(f"{k} (saved {saved.get(k)!r}, now {settings[k]!r})" for k in diff)
                + "; rerun the smaller target's pruning job with the same settings"
            )
        model.load_state_dict(resume["state_dict"])
        removed = resume["removed"].clone().bool()
        count = int(resume["batches"])
        for p, buf in zip(model.parameters(), resume["momentum"]):
            if buf is not None:
                opt.state[p]["momentum_buffer"] = buf.to(device).clone()

    group_of = torch.empty(layout.total, dtype=torch.long)
    for i, ((_, n), off) in enumerate(zip(layout.groups, layout.offsets)):
        group_of[off : off + n] = i
    sizes = torch.tensor([n for _, n in layout.groups], dtype=torch.long)

    def reduction():
        return 1.0 - float(layout.estimate_macs((~removed).float())) / layout.macs

    hooks = ChannelHooks(model, layout, "gate", probe_sites=taylor_sites(layout, model, opts.get("site", "norm")))
    hooks.gates = (~removed).float().to(device)
    snapshots, pending, steps, was_training = [], list(targets), 0, model.training

    def snapshot(target, note=""):
        red = reduction()
        log(
            f"taylor trajectory: target {target:.4f} reached at batch {count} after {steps} pruning "
            f"step(s) in this run: {int(removed.sum())} channels removed, ~{red:.4f} of MACs removed"
            + (f"; {note}" if note else "")
        )
        momentum = [opt.state.get(p, {}).get("momentum_buffer") for p in model.parameters()]
        state = {
            "format": FORMAT,
            "version": VERSION,
            "settings": settings,
            "removed": removed.clone(),
            "batches": count,
            "target": target,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "momentum": [None if b is None else b.detach().cpu().clone() for b in momentum],
        }
        snapshots.append(
            {
                "target": target,
                "reduction": red,
                "removed": removed.clone(),
                "batches": count,
                "note": note,
                "state": state,
                "plan": layout.plan_from_pruned(removed),
            }
        )

    def check_point(batch, loss):
        """At a check point every target already met is snapshotted; then, if one is left, a
        pruning step. A state saved here resumes here, so a snapshot never skips a step."""
        nonlocal steps
        while pending and reduction() >= pending[0]:
            snapshot(pending.pop(0))
        if not pending:
            return
        model.eval()  # the authors score in eval mode, on the batch just trained on
        hooks.probing = True
        score_loss = forward_loss(model, batch, loss_fn, teacher, device)
        opt.zero_grad(set_to_none=True)
        score_loss.backward()
        hooks.probing = False
        scores, _ = hooks.taylor_batch()
        opt.zero_grad(set_to_none=True)
        left = sizes - torch.bincount(group_of[removed], minlength=len(sizes))
        chosen = []
        for j in torch.argsort(scores, stable=True).tolist():
            if len(chosen) == P:
                break
            gi = int(group_of[j])
            if not removed[j] and left[gi] > int(opts["min_channels"]):
                chosen.append(j)
                left[gi] -= 1
        if not chosen:
            red = reduction()
            while pending:
                t = pending.pop(0)
                snapshot(
                    t,
                    f"target {t:.4f} not reachable: every prunable group is at its minimum of "
                    f"{opts['min_channels']} channel(s); {red:.4f} of MACs removed",
                )
            return
        removed[chosen] = True
        hooks.gates = (~removed).float().to(device)
        steps += 1
        if steps % PROGRESS_STEPS == 1:
            log(
                f"taylor trajectory: batch {count}, step {steps}: loss {loss:.4f}, "
                f"{int(removed.sum())}/{layout.total} channels removed, ~{reduction():.4f} of MACs removed "
                f"(next target {pending[0]:.4f})"
            )

    try:
        if resume is not None and count > 0 and count % B == 0:
            # saved at a check point: redo it on the same batch (the stream is a function of the
            # batch number), exactly as the uninterrupted trajectory went on from there
            _, batch = next(seeded_batches(dataset, batch_size, seed, start=count - 1))
            check_point(batch, float("nan"))
        stream = seeded_batches(dataset, batch_size, seed, start=count)
        while pending:
            _, batch = next(stream)
            model.train()
            loss = forward_loss(model, batch, loss_fn, teacher, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            count += 1
            if count % B == 0:
                check_point(batch, loss.item())
    finally:
        hooks.remove()
        model.train(was_training)
    return snapshots


def materialize(model, plan, example_inputs):
    """A physically pruned copy of the dense-shaped `model` without the planned channels, and its
    Torch-Pruning history (which replays the surgery on a fresh model)."""
    pruned = copy.deepcopy(model)
    DG = build_graph(pruned, example_inputs)
    apply_plan(DG, pruned, plan)
    return pruned, DG.pruning_history()


def save_state(path, state):
    with atomic_open(path) as f:
        torch.save(state, f)


def load_state(path):
    """A saved trajectory state, from a file of save_state or from a pruned checkpoint that holds
    one (pwprune.checkpoint.save_checkpoint(..., trajectory=)). Plain data: loads with
    weights_only=True, so it cannot run code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path}: cannot load the Taylor trajectory state ({type(e).__name__}: {e}); "
            "delete it and rerun the pruning job that writes it"
        ) from None
    if isinstance(state, dict) and state.get("format") == "pwprune-checkpoint":
        if "trajectory" not in state:
            raise ValueError(
                f"{path}: this pruned checkpoint holds no Taylor trajectory to continue (only "
                "taylor with schedule 'authors' saves one); rerun its pruning job with that schedule"
            )
        state = state["trajectory"]
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise ValueError(
            f"{path}: not a pwprune Taylor trajectory state (format {FORMAT!r} version "
            f"{VERSION}); delete it and rerun the pruning job that writes it"
        )
    return state
