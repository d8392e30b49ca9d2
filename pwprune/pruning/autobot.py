"""AutoBot (Castells & Yeom, 2021): learn which channels to keep with trainable gates.

One sigmoid gate per channel of every prunable group (a residual stream shares one gate per
channel across all the layers that write it) multiplies the group's feature maps. The model's
weights stay frozen; only the gates learn, on

    task loss (CE or PW, against the teacher) + beta * FLOP term + binarization * mean(g * (1 - g))

with kept = estimated kept MACs / MACs and keep = 1 - target:
    flop_loss "symmetric"   |kept - keep|
    flop_loss "asymmetric"  (kept - keep) / (1 - keep) above the target, 1 - kept / keep below:
                            the authors' (F - F*) / (F0 - F*) and 1 - F / F* (pruner.py:129-133)
                            in fractions of the dense count, each side scaled to [0, 1]

The MAC estimate is Layout.estimate_macs fed with the gate values: a conv's MACs scale with the
soft kept fraction of its input channels times that of its output channels. The binarisation
term pushes gates to 0 or 1 so thresholding them afterwards changes the network little.
The trained gate values are the channel scores (scorers.autobot_score); target.py turns them into
a plan, by its usual search for the reduction nearest the target (search "nearest"), or by the
authors' bisection of the gate threshold (search "threshold", threshold_search below).

The options that reproduce the authors' code (prune/pruner.py, prune/utils.py; docs/paper-settings.md,
"AutoBot"), each named, pwprune's default first:
    init           gate logits start at 3.0 | the authors' 2.1972 (sigmoid 0.9, pruner.py:223)
    mode           "eval": BN running statistics, no dropout, as the pruned model runs |
                   "train": batch statistics and dropout, as pruner.py:139; the BN running
                   statistics this moves are put back afterwards, as the authors' restore of the
                   dense weights does (prune/strategy.py:11, 15; prune/utils.py:355-357)
    keep           "last": the final gates | "best": the gates that scored the lowest total
                   loss among the steps after best_after (0.6) of the iterations | "authors":
                   the gates one optimiser step after that lowest loss, which is what
                   pruner.py:204-209 snapshots (the loss is taken before optimizer.step(), the
                   state dict after)
    plain_targets  "labels": ce and pw_weight train on the true labels | "teacher": on the dense
                   model's soft outputs (distillation; pw_weight: soft outputs with weights), as
                   the authors' AutoBot without fix_labels (pruner.py:162, prune.py:167-176)
    search         "nearest": target.py's search for the reachable reduction nearest the target |
                   "threshold": the authors' bisection of the gate threshold, which stops at the
                   first threshold within the tolerance (threshold_search)
    tolerance_pw   the tolerance for a pruning loss that reweights (pw, pw_weight) instead of
                   prune_to_target's `tolerance` (null: the same): the authors' sw_autobot stops
                   within 0.01 of the FLOPs, their plain autobot within 0.001 (pruner.py:59, 246)
"""

import copy
import math

import torch

from .importance import ChannelHooks
from .loop import batches, forward_loss

FLOP_LOSSES = ("symmetric", "asymmetric")
MODES = ("eval", "train")
KEEPS = ("last", "best", "authors")
PLAIN_TARGETS = ("labels", "teacher")
SEARCHES = ("nearest", "threshold")
CHOICES = {"flop_loss": FLOP_LOSSES, "mode": MODES, "keep": KEEPS, "plain_targets": PLAIN_TARGETS, "search": SEARCHES}


def check_options(opts):
    """Refuse autobot option values that have no meaning (ValueError naming the option), of the
    options present in `opts` (the scorer's; target.py checks the loop's: search, tolerance_pw)."""
    for key, valid in CHOICES.items():
        if key in opts and opts[key] not in valid:
            raise ValueError(f"autobot option {key} must be one of {', '.join(valid)}, got {opts[key]!r}")
    best_after = opts.get("best_after", 0.0)
    if isinstance(best_after, bool) or not isinstance(best_after, (int, float)) or not 0 <= best_after < 1:
        raise ValueError(
            f"autobot option best_after must be a fraction of the iterations in [0, 1), got {best_after!r}"
        )
    init = opts.get("init", 0.0)
    if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
        raise ValueError(f"autobot option init must be a finite number (a gate logit), got {init!r}")


def flop_term(kept, keep, kind):
    """The FLOP penalty for a kept fraction `kept` (tensor) against the target's `keep`."""
    if kind == "symmetric":
        return (kept - keep).abs()
    if kind == "asymmetric":
        if kept > keep:
            return (kept - keep) / (1.0 - keep)
        return 1.0 - kept / keep
    raise ValueError(f"flop_loss must be one of {', '.join(FLOP_LOSSES)}, got {kind!r}")


def gate_loss(loss_fn, plain_targets, teacher):
    """The loss the gates train on. plain_targets "teacher": a loss that does not correct its
    targets (ce, pw_weight) trains on the teacher's soft outputs instead of the labels; pw and
    pw_correct keep their corrected targets, as the authors' fix_labels runs."""
    if plain_targets == "labels":
        return loss_fn
    if plain_targets != "teacher":
        raise ValueError(f"plain_targets must be one of {', '.join(PLAIN_TARGETS)}, got {plain_targets!r}")
    if not hasattr(loss_fn, "correct_targets") or not hasattr(loss_fn, "soft_targets"):
        raise ValueError(
            "autobot option plain_targets 'teacher' needs a PerformanceWeightedLoss "
            "(pwprune.loss.make_loss), whose targets it can switch to the teacher's outputs"
        )
    if loss_fn.correct_targets:
        return loss_fn
    if teacher is None:
        raise ValueError(
            "autobot option plain_targets 'teacher' trains the gates on the dense model's outputs: pass teacher="
        )
    soft = copy.copy(loss_fn)
    soft.soft_targets = True
    return soft


def train_gates(
    model,
    layout,
    loader,
    loss_fn,
    teacher,
    target_reduction,
    device,
    *,
    iterations=200,
    lr=0.05,
    beta=2.0,
    binarization=0.1,
    init=3.0,
    flop_loss="symmetric",
    mode="eval",
    keep="last",
    best_after=0.6,
    log=print,
):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if keep not in KEEPS:
        raise ValueError(f"keep must be one of {', '.join(KEEPS)}, got {keep!r}")
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    # train mode moves the BN running statistics; they are put back below
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.train(mode == "train")  # eval: frozen weights, BN keeps its running statistics
    logits = torch.full((layout.total,), float(init), device=device, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr)
    hooks = ChannelHooks(model, layout, "gate")
    keep_target = 1.0 - target_reduction
    best_loss, best_logits, best_step = math.inf, None, None
    try:
        for it, batch in zip(range(iterations), batches(loader)):
            gates = torch.sigmoid(logits)
            hooks.gates = gates
            task = forward_loss(model, batch, loss_fn, teacher, device)
            kept = layout.estimate_macs(gates.cpu() if gates.device.type != "cpu" else gates) / layout.macs
            flop = flop_term(kept.to(device), keep_target, flop_loss)
            polar = (gates * (1 - gates)).mean()
            loss = task + beta * flop + binarization * polar
            scored = logits.detach().clone()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if keep != "last" and it + 1 > best_after * iterations and loss.item() < best_loss:
                best_loss, best_step = loss.item(), it + 1
                best_logits = scored if keep == "best" else logits.detach().clone()
            if it % max(1, iterations // 5) == 0 or it == iterations - 1:
                log(
                    f"autobot gates {it + 1}/{iterations}: task {task.item():.4f} kept MACs ~{kept.item():.3f} "
                    f"(target {keep_target:.3f}) binarisation {polar.item():.3f} "
                    f"gates<0.5: {(gates < 0.5).float().mean().item():.3f}"
                )
    finally:
        hooks.remove()
        for p in frozen:
            p.requires_grad_(True)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        model.train(was_training)
    if keep != "last":
        if best_logits is None:
            log(f"autobot keep {keep!r}: no finite loss after {best_after} of the iterations; keeping the last gates")
        else:
            log(
                f"autobot keep {keep!r}: the lowest total loss {best_loss:.4f} was at step {best_step}/{iterations}"
                + ("; keeping the gates after that step's update" if keep == "authors" else "")
            )
            logits = best_logits
    return torch.sigmoid(logits).detach().float().cpu()


def threshold_search(layout, gates, cand, target, macs_before, tolerance, log=print, max_steps=100, masked=None):
    """The authors' stopping rule (pruner.py:88-108): bisect the gate threshold, starting at 0.5 and
    moving by 2^-(i+1) at step i, down when too much would be removed and up otherwise, and stop at
    the first threshold whose estimated reduction is within `tolerance` of the target (or after
    `max_steps`). Channels whose gate is at or below the threshold are removed (the authors keep
    gate > threshold), among the candidates `cand` (least important first, each group's best
    min_channels left out). The reduction is the MAC estimate's (Layout.estimate_macs), as the
    authors count analytically. masked: (layout, cand, k) -> the bool mask of the channels removed
    (target._pruned_mask with the prune's round_to); None: the k candidates themselves.
    -> (number of candidates removed, threshold)."""
    cand_gates = gates[cand]

    def reduction(k):
        kept = torch.ones(layout.total)
        if masked is None:
            kept[cand[:k]] = 0.0
        else:
            kept[masked(layout, cand, k)] = 0.0
        return 1.0 - float(layout.estimate_macs(kept)) / macs_before

    threshold, k = 0.5, 0
    for i in range(1, max_steps + 1):
        k = int((cand_gates <= threshold).sum())
        red = reduction(k)
        if abs(red - target) < tolerance:
            break
        threshold += -(2.0 ** -(i + 1)) if red > target else 2.0 ** -(i + 1)
    else:  # out of steps: the last moved threshold decides, as in the authors' loop
        k = int((cand_gates <= threshold).sum())
        red = reduction(k)
    log(
        f"autobot threshold search: gate threshold {threshold:.6f} removes {k}/{len(cand)} candidate channels, "
        f"estimated reduction {red:.4f} (target {target:.4f}, tolerance {tolerance})"
    )
    return k, threshold
