"""Every pruning method as one scorer, and the one table of them (SCORERS).

A scorer is a plain function

    score(model, layout, data, **options) -> Tensor

returning one score per prunable channel of `layout` (graph.Layout), in its flat order; higher
means more worth keeping. target.py ranks the scores and removes the lowest to the MAC target.
`data` (ScoringData) carries what data-driven methods need (loader, loss_fn, teacher, device,
seed, the target, log); data-free methods ignore it, or read only its seed.

A method's options are the scorer's keyword-only parameters, their defaults the options'
defaults. Options that steer target.py's loop rather than the scoring (Taylor's schedule,
AutoBot's search; target.LOOP_OPTIONS says what each means) are declared on the scorer with
@loop_options. So adding a method is one function here plus one entry in SCORERS.

The Taylor scorer trains while it scores (batches_per_step SGD steps on the loss it measures),
so it changes the model's weights; it draws its batches from data.batch(), one stream that
continues across the rounds of target.py's geometric schedule.
"""

from __future__ import annotations

import inspect

import torch

from .autobot import check_options, gate_loss, train_gates
from .fair import draw_batches, fairprune_scores, greedy_scores, group_fisher, group_taylor, group_weights
from .importance import ChannelHooks, magnitude_scores, normalise_in_groups, taylor_sites
from .loop import batches, forward_loss


class ScoringData:
    """What a data-driven scorer reads besides the model and the layout.

    loader, loss_fn: the training batches and loss_fn(logits, teacher_logits, targets); reading
                     either when it was not given raises a ValueError naming the method
    teacher:         teacher(x, idx) -> logits, or None
    device, seed:    where the model runs; the seed of the run (random uses it)
    target:          the fraction of MACs the current round removes (AutoBot's FLOP term)
    log:             progress lines
    batch():         the next training batch of one stream that cycles over the loader and
                     continues from call to call (Taylor's rounds)
    """

    def __init__(
        self, method, *, loader=None, loss_fn=None, teacher=None, device="cpu", seed=0, target=None, log=print
    ):
        self.method, self._loader, self._loss_fn = method, loader, loss_fn
        self.teacher, self.device, self.seed, self.target, self.log = teacher, device, seed, target, log
        self._stream = None

    def _needed(self, value):
        if value is None:
            raise ValueError(
                f"pruning method {self.method!r} is data-driven: pass loader and loss_fn (and teacher for PW losses)"
            )
        return value

    @property
    def loader(self):
        return self._needed(self._loader)

    @property
    def loss_fn(self):
        return self._needed(self._loss_fn)

    def batch(self):
        if self._stream is None:
            self._stream = batches(self.loader)
        return next(self._stream)


def loop_options(**defaults):
    """Declare the options of target.py's loop a method takes (see target.LOOP_OPTIONS), with
    this method's defaults. They are resolved and validated with its own options but are read by
    the loop; the scorer is called without them."""

    def mark(fn):
        fn.loop_options = dict(defaults)
        return fn

    return mark


def scorer_options(fn):
    """{option: default} of a scorer: its keyword-only parameters. Refuses a function without the
    uniform signature score(model, layout, data, *, option=default, ...)."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword = [p for p in params if p.kind == p.KEYWORD_ONLY]
    if (
        positional != ["model", "layout", "data"]
        or len(keyword) + 3 != len(params)
        or any(p.default is p.empty for p in keyword)
    ):
        raise TypeError(
            f"{getattr(fn, '__name__', fn)!r} is not a scorer: its signature must be "
            "(model, layout, data, *, option=default, ...)"
        )
    return {p.name: p.default for p in keyword}


# ----------------------------------------------------------------------------------------------
# the methods


def random_score(model, layout, data):
    """Uniform random scores from the run's seed (a generator of its own: the global RNG is left alone)."""
    return torch.rand(layout.total, generator=torch.Generator().manual_seed(int(data.seed)))


def magnitude_score(model, layout, data, *, norm=2):
    """Filter norm over every layer coupled to the channel (importance.magnitude_scores), divided
    by its group's mean so groups of different scale compete on one threshold."""
    return normalise_in_groups(layout, magnitude_scores(layout, model, int(norm)))


@loop_options(schedule="geometric", steps=10, prunes_per_step=1, restore_weights="never")
def taylor_score(model, layout, data, *, batches_per_step=8, lr=1e-3, momentum=0.9, site="norm", normalise=None):
    """First-order Taylor (Molchanov et al. 2017): the mean over samples of |sum over the channel's
    positions of activation x gradient|, measured at `site` ("norm": the BN outputs, "conv": the
    conv outputs before BN; importance.taylor_sites) over `batches_per_step` batches of
    data.batch(), with the model in train mode taking one SGD step (lr, momentum; none when lr is 0)
    on each batch after measuring it. normalise (None: yes) divides by each group's mean.

    This is the geometric schedule's scoring; the "authors" schedule scores inside its
    trajectory (trajectory.py) instead."""
    per_step = int(batches_per_step)
    if per_step < 1:
        raise ValueError(f"taylor option batches_per_step must be >= 1, got {per_step}")
    probe_sites = taylor_sites(layout, model, site)
    was_training = model.training
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=float(lr), momentum=float(momentum))
    hooks = ChannelHooks(model, layout, "probe", probe_sites=probe_sites)
    acc, seen, total_loss = torch.zeros(layout.total), 0, 0.0
    try:
        for _ in range(per_step):
            loss = forward_loss(model, data.batch(), data.loss_fn, data.teacher, data.device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            s, n = hooks.taylor_batch()
            acc, seen, total_loss = acc + s, seen + n, total_loss + loss.item()
            if float(lr) > 0:
                opt.step()
    finally:
        hooks.remove()
    model.train(was_training)
    data.log(f"taylor scores over {per_step} batch(es): loss {total_loss / per_step:.4f}")
    scores = acc / max(seen, 1)
    if normalise is None or normalise:
        scores = normalise_in_groups(layout, scores)
    return scores


@loop_options(search="nearest", tolerance_pw=None)
def autobot_score(
    model,
    layout,
    data,
    *,
    iterations=200,
    epochs=None,
    lr=0.05,
    beta=2.0,
    binarization=0.1,
    init=3.0,
    flop_loss="symmetric",
    mode="eval",
    keep="last",
    best_after=0.6,
    plain_targets="labels",
):
    """AutoBot's trained gate values (autobot.train_gates), gates trained towards data.target;
    `epochs` (if set) replaces `iterations` by that many passes over the loader."""
    check_options(
        {
            "flop_loss": flop_loss,
            "mode": mode,
            "keep": keep,
            "plain_targets": plain_targets,
            "best_after": best_after,
            "init": init,
        }
    )
    if epochs is not None:
        iterations = int(epochs) * len(data.loader)
    return train_gates(
        model,
        layout,
        data.loader,
        gate_loss(data.loss_fn, plain_targets, data.teacher),
        data.teacher,
        data.target,
        data.device,
        iterations=int(iterations),
        lr=float(lr),
        beta=float(beta),
        binarization=float(binarization),
        init=float(init),
        flop_loss=flop_loss,
        mode=mode,
        keep=keep,
        best_after=float(best_after),
        log=data.log,
    )


@loop_options(steps=1)
def fairgrape_score(model, layout, data, *, batches=16):
    """FairGRAPE (Lin et al. 2022; pwprune.pruning.fair, docs/fair-baselines.md): per-group Taylor
    importance over `batches` batches of data.batch() (fair.group_taylor: eval mode, no weight
    changes), then, within each dependency group, the greedy selection that keeps every sensitive
    group's share of the importance near its share in the model as given (fair.greedy_keep_order);
    the score is the channel's place in that order, scaled to (0, 1] per group, so every group loses
    about the same fraction of its channels, last-kept first. `steps` > 1 rescores the pruned model
    on a geometric schedule, each round's targets taken from the model that round starts from."""
    drawn, groups = draw_batches(data, batches, "fairgrape")
    importance = group_taylor(model, layout, drawn, groups, data.loss_fn, data.teacher, data.device)
    shares = (importance.sum(0) / importance.sum().clamp(min=1e-30)).tolist()
    data.log(
        f"fairgrape: groups {groups}, importance shares {', '.join(f'{s:.3f}' for s in shares)} "
        f"over {len(drawn)} batch(es)"
    )
    return greedy_scores(layout, importance)


def fairprune_score(model, layout, data, *, batches=4, beta=1.0, normalise=True):
    """FairPrune (Wu et al. 2022; pwprune.pruning.fair, docs/fair-baselines.md): per-group OBD
    saliency 1/2 theta^2 F (F the empirical Fisher of the group's per-sample gradients) over
    `batches` batches of data.batch(), summed per channel over its coupled layers
    (fair.group_fisher); the group with the highest accuracy of the model on those samples is
    privileged (fair.group_weights). Score -(S_priv - beta * S_unpriv): the channels salient for the
    privileged group and not for the unprivileged one go first. normalise divides each dependency
    group's scores by its mean total saliency."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"fairprune option beta must be a number >= 0, got {beta!r}")
    if not isinstance(normalise, bool):
        raise ValueError(f"fairprune option normalise must be true or false, got {normalise!r}")
    drawn, groups = draw_batches(data, batches, "fairprune")
    saliency, accuracy, prob = group_fisher(model, layout, drawn, groups, data.loss_fn, data.teacher, data.device)
    priv, weights = group_weights(accuracy, prob)
    data.log(
        f"fairprune: group accuracy on the {sum(len(b[1]) for b in drawn)} scored training samples "
        + ", ".join(f"{g}: {a:.3f}" for g, a in zip(groups, accuracy))
        + f"; privileged group {groups[priv]}, unprivileged weights "
        + ", ".join(f"{g}: {w:.3f}" for g, w in zip(groups, weights) if g != groups[priv])
    )
    return fairprune_scores(layout, saliency, priv, weights, float(beta), normalise)


# the one registry of pruning methods, in the paper's order (data-free first), then the
# group-aware baselines (issue 14)
SCORERS = {
    "random": random_score,
    "magnitude": magnitude_score,
    "taylor": taylor_score,
    "autobot": autobot_score,
    "fairgrape": fairgrape_score,
    "fairprune": fairprune_score,
}
