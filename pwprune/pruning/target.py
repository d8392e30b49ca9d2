"""Prune a model to a target fraction of MACs removed.

The method's scorer (scorers.SCORERS[method], score(model, layout, data, **options)) yields one
score per channel of the flat layout (graph.Layout). The channels are then ranked globally and
the k lowest removed, with each group keeping its `min_channels` best channels. k is found by
bisection: first on the analytic MAC estimate (cheap, exact for conv/linear/norm layers), then
corrected by real counts (tp.utils.count_ops_and_params) on pruned deepcopies, which also see the
activations and pools the estimate leaves out. Removing the k lowest is nested in k, so MACs
fall monotonically and bisection is sound. The final choice is applied to the model through
one dependency graph, whose pruning_history() then replays the surgery on a fresh model.

`layers` (graph.LAYER_SCOPES) sets what is prunable and which MACs the target counts: "all" (every
layer's MACs, every group but the classifier's) or "conv" (the authors': only conv-rooted groups, and
the MACs of the full convolutions; the estimate is then exact). macs_before/after and
achieved_reduction are in that count; total_macs_before/after always count every layer.

The loop (LOOP_OPTIONS: a method takes those its scorer declares with scorers.loop_options):
  one round  score once, prune to the target (every method without `steps`);
  geometric  `steps` rounds of (score, prune to the round's target), the targets shrinking the
             kept MACs geometrically towards the final one; each round scores the model the
             previous one pruned (Taylor: its scorer takes SGD steps while scoring);
  authors    Taylor's trajectory (trajectory.py), which scores inside it: `prunes_per_step`
             channels removed after every `batches_per_step` plain SGD batches until the target is
             reached; it can continue from the saved state of a smaller target (`trajectory=`), so
             one trajectory serves every target. Never normalised (`normalise: true` is refused).
`restore_weights` ("never", "always", "authors" = for a PW pruning loss only, as the authors'
scripts/prune.py:226) gives the pruned model the dense model's weights of the kept channels instead
of the weights the scoring's SGD steps left. `search` "threshold" replaces the search for the
reduction nearest the target by AutoBot's authors' bisection of the gate threshold
(autobot.threshold_search), and `tolerance_pw` replaces `tolerance` for a reweighting (PW) loss.

`round_to` N (COMMON_OPTIONS; null = no rounding) keeps every pruned group's channel count a multiple
of N, as Torch-Pruning's pruners' round_to, so the pruned convs fit the vector widths and tiles of
the CPU/GPU kernels: a group that loses channels keeps a multiple of N that is at least N and at
least min_channels, or all of its n channels. A group whose n is smaller than N (or than the first
such multiple) is never pruned; one whose n is not a multiple of N is either left whole or cut to a
multiple. For k candidates removed, each group keeps its unrounded count (n minus its candidates
among the k) rounded to the nearest count it may keep (ties: the larger), losing its lowest-scored
channels: a nondecreasing function of k, so the removed sets stay nested and the bisection sound;
it just moves in steps of up to N channels of one group. (Torch-Pruning instead rounds the kept
count down, which can reach 0 for a group smaller than N.) It applies to every round, the
geometric schedule's intermediate ones included, and to search "threshold"; the authors' Taylor
trajectory removes `prunes_per_step` single channels at a time across groups, which no rounding
can honour, so schedule "authors" refuses round_to > 1.
"""

import copy
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from pwprune.attention import check_transformer, replay

from .autobot import SEARCHES, threshold_search
from .graph import Layout, apply_plan, build_graph, check_layers, counted_macs, macs_params_on_device, trial_macs
from .scorers import SCORERS, ScoringData, scorer_options

PRUNING_METHODS = tuple(SCORERS)  # the methods as registered at import

# the options of the loop, with what each does; a method takes those its scorer declares
# (scorers.loop_options), with its defaults; min_channels and round_to (COMMON_OPTIONS) apply to every method
LOOP_OPTIONS = {
    "schedule": "geometric (`steps` rounds) or authors (Taylor's trajectory, trajectory.py)",
    "steps": "rounds of the geometric schedule",
    "prunes_per_step": "channels removed per pruning step of the authors' trajectory",
    "restore_weights": "never, always or authors (for a PW pruning loss only): the pruned model gets the "
    "dense weights of the kept channels",
    "search": "nearest (the reduction nearest the target) or threshold (autobot.threshold_search)",
    "tolerance_pw": "the tolerance for a reweighting (PW) loss (null: `tolerance`)",
}
COMMON_OPTIONS = {"min_channels": 1, "round_to": None}


class _Options(Mapping):
    """method -> {option: default}: the loop's options its scorer declares, then the scorer's own;
    read from SCORERS whenever asked, so a method is registered there and nowhere else."""

    def __getitem__(self, method):
        fn = SCORERS[method]
        loop, own = getattr(fn, "loop_options", {}), scorer_options(fn)
        wrong = sorted(set(loop) - set(LOOP_OPTIONS)) + sorted(set(loop) & set(own))
        if wrong:
            raise TypeError(
                f"scorer of {method!r}: {wrong} are not options of the loop ({', '.join(LOOP_OPTIONS)}) "
                "or are also its own"
            )
        return {**loop, **own}

    def __iter__(self):
        return iter(SCORERS)

    def __len__(self):
        return len(SCORERS)


OPTIONS = _Options()
TAYLOR_SCHEDULES = ("geometric", "authors")
RESTORE_WEIGHTS = ("never", "always", "authors")
# options that only one schedule reads; setting one for the other schedule is refused
SCHEDULE_ONLY = {"steps": "geometric", "prunes_per_step": "authors"}


@dataclass
class PruneResult:
    model: nn.Module
    history: list
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    achieved_reduction: float
    target_reduction: float
    within_tolerance: bool
    note: str
    trajectory: dict | None = None  # Taylor "authors" schedule: the state to continue from
    counted_layers: str = "all"  # the count of macs_*/achieved_reduction: "all" or "conv" (graph.LAYER_SCOPES)
    total_macs_before: int | None = None  # every layer's MACs (Torch-Pruning's count), whatever `layers`
    total_macs_after: int | None = None


def _check_unknown(method, options):
    valid = {**COMMON_OPTIONS, **OPTIONS[method]}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for pruning method {method!r}; valid options: {sorted(valid) or 'none'}"
        )
    return valid


def _resolve_options(method, options):
    """The method's options with defaults filled in, checked where the loop reads them; the
    scorer checks the values of its own when it runs."""
    if method not in SCORERS:
        raise ValueError(f"unknown pruning method {method!r}; valid methods: {', '.join(SCORERS)}")
    opts = {**_check_unknown(method, options), **options}
    if "schedule" in opts:
        if opts["schedule"] not in TAYLOR_SCHEDULES:
            raise ValueError(
                f"{method} option schedule must be one of {', '.join(TAYLOR_SCHEDULES)}, got {opts['schedule']!r}"
            )
        wrong = sorted(k for k, s in SCHEDULE_ONLY.items() if k in options and s != opts["schedule"])
        if wrong:
            raise ValueError(
                f"{method} option(s) {wrong} apply only to schedule "
                f"{SCHEDULE_ONLY[wrong[0]]!r}, not to {opts['schedule']!r}"
            )
        if opts.get("normalise", False) is None:  # each schedule's own: geometric normalises, the authors' never
            opts["normalise"] = opts["schedule"] == "geometric"
        if "normalise" in opts and not isinstance(opts["normalise"], bool):
            raise ValueError(f"{method} option normalise must be true or false, got {opts['normalise']!r}")
        if opts.get("normalise") and opts["schedule"] == "authors":
            raise ValueError(
                f"{method} option normalise: true does not apply to schedule 'authors', which ranks "
                "the raw scores globally as the authors' code does (pruner.py:333-335); "
                "use schedule 'geometric' or normalise: false"
            )
    if "steps" in opts and int(opts["steps"]) < 1:
        raise ValueError(f"{method} option steps must be >= 1, got {opts['steps']!r}")
    if "restore_weights" in opts and opts["restore_weights"] not in RESTORE_WEIGHTS:
        raise ValueError(
            f"{method} option restore_weights must be one of {', '.join(RESTORE_WEIGHTS)}, "
            f"got {opts['restore_weights']!r}"
        )
    if "search" in opts and opts["search"] not in SEARCHES:
        raise ValueError(f"{method} option search must be one of {', '.join(SEARCHES)}, got {opts['search']!r}")
    tol = opts.get("tolerance_pw")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol <= 0.2):
        raise ValueError(f"{method} option tolerance_pw must be in (0, 0.2] or null, got {tol!r}")
    if int(opts["min_channels"]) < 1:
        raise ValueError(f"min_channels must be >= 1 (a layer is never pruned to zero), got {opts['min_channels']!r}")
    r = opts["round_to"]
    if r is not None and (isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1):
        raise ValueError(
            f"round_to must be an integer >= 1 (every pruned group keeps a multiple of it) or null "
            f"(no rounding), got {r!r}"
        )
    if r is not None and r > 1 and opts.get("schedule") == "authors":
        raise ValueError(
            f"{method} option round_to ({r}) does not apply to schedule 'authors': its trajectory removes "
            "`prunes_per_step` single channels at a time, ranked across groups, so no group's count can "
            "be held to a multiple; use schedule 'geometric' or round_to: null"
        )
    opts["round_to"] = None if r is None else int(r)
    return opts


# ----------------------------------------------------------------------------------------------
# choosing how many channels to remove


def _candidates(layout, scores, min_channels):
    """Flat indices of removable channels, least important first; each group's min_channels
    highest-scored channels are never candidates."""
    cands = []
    for (_, n), off in zip(layout.groups, layout.offsets):
        order = torch.argsort(scores[off : off + n], stable=True)
        cands.append(order[: max(n - min_channels, 0)] + off)
    cand = torch.cat(cands) if cands else torch.zeros(0, dtype=torch.long)
    return cand[torch.argsort(scores[cand], stable=True)]


def _rounded_keep(raw, n, round_to, least):
    """The count a group of n keeps for an unrounded `raw`: the nearest of n and the multiples of
    round_to from `least` (the smallest multiple >= min_channels) up to n; ties keep more."""
    if least >= n:  # no multiple to prune to (n < round_to, or min_channels too high): keep all
        return n
    top = n - n % round_to  # the largest multiple <= n (n itself when n is one)
    if raw >= top:
        return n if n - raw <= raw - top else top
    down = raw - raw % round_to
    if down < least:
        return least
    return down + round_to if down + round_to - raw <= raw - down else down


def _pruned_mask(layout, cand, k, round_to=None, min_channels=1):
    """Flat bool mask of the channels removed when the k lowest candidates go; with round_to, each
    group's count is then rounded (_rounded_keep) and it loses that many of its lowest candidates."""
    mask = torch.zeros(layout.total, dtype=torch.bool)
    if not round_to or round_to == 1:
        mask[cand[:k]] = True
        return mask
    group = torch.searchsorted(torch.tensor(layout.offsets), cand, right=True) - 1
    taken = torch.bincount(group[:k], minlength=len(layout.groups)).tolist()
    least = -(-max(int(min_channels), 1) // round_to) * round_to
    for i, (_, n) in enumerate(layout.groups):
        drop = n - _rounded_keep(n - taken[i], n, round_to, least)
        if drop:
            mask[cand[group == i][:drop]] = True  # cand keeps each group's own order: lowest first
    return mask


def _estimated_k(layout, cand, aim, macs_before, masked=_pruned_mask):
    """Smallest k whose estimated reduction reaches `aim` (or all candidates)."""

    def red(k):
        return 1.0 - float(layout.estimate_macs((~masked(layout, cand, k)).float())) / macs_before

    lo, hi = 0, len(cand)
    if red(hi) < aim:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if red(mid) >= aim:
            hi = mid
        else:
            lo = mid + 1
    # the step across the target can be large; take whichever side lands closer
    if lo > 0 and abs(red(lo - 1) - aim) < abs(red(lo) - aim):
        return lo - 1
    return lo


def _masker(round_to, min_channels):
    """_pruned_mask with this round_to and min_channels: (layout, cand, k) -> mask."""

    def masked(layout, cand, k):
        return _pruned_mask(layout, cand, k, round_to, min_channels)

    return masked


def choose_plan(
    model,
    layout,
    scores,
    target,
    macs_before,
    example_inputs,
    *,
    tolerance,
    min_channels,
    round_to=None,
    exact=True,
    log=print,
):
    """-> (plan {group key: [channel idx]}, expected reduction, note)."""
    cand = _candidates(layout, scores, min_channels)
    masked = _masker(round_to, min_channels)
    if not exact:  # intermediate Taylor rounds: the estimate is close enough
        k = _estimated_k(layout, cand, target, macs_before, masked)
        red = 1.0 - float(layout.estimate_macs((~masked(layout, cand, k)).float())) / macs_before
        return layout.plan_from_pruned(masked(layout, cand, k)), red, ""

    real = {}

    def measure(k):
        if k not in real:
            plan = layout.plan_from_pruned(masked(layout, cand, k))
            real[k] = 1.0 - trial_macs(model, plan, example_inputs, layout.layers) / macs_before
            log(
                f"  trial: remove {k}/{len(cand)} candidate channels -> {real[k]:.4f} of MACs removed "
                f"(target {target:.4f})"
            )
        return real[k]

    def close(k):
        return abs(real[k] - target) <= tolerance / 2

    note = ""
    kmax = len(cand)
    most = 1.0 - float(layout.estimate_macs((~masked(layout, cand, kmax)).float())) / macs_before
    if most < target - tolerance / 2 and measure(kmax) < target - tolerance:
        note = (
            f"target {target:.4f} not reachable: with every prunable group at its minimum of "
            f"{min_channels} channel(s)"
            + (f" rounded to a multiple of round_to {round_to}" if round_to and round_to > 1 else "")
            + f" only {real[kmax]:.4f} of MACs can be removed"
        )
        k = kmax
    else:
        aim = target
        for _ in range(3):  # correct the estimate by what it misses (activations, pools)
            k = _estimated_k(layout, cand, aim, macs_before, masked)
            if abs(measure(k) - target) <= tolerance / 2:
                break
            aim = min(max(aim + target - real[k], 0.0), 1.0)
        best = min(real, key=lambda j: (abs(real[j] - target), j))
        if not close(best):  # bisect on real counts inside the bracket found so far
            lo = max([j for j, r in real.items() if r < target], default=0)
            hi = min([j for j, r in real.items() if r >= target], default=kmax)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if measure(mid) < target:
                    lo = mid
                else:
                    hi = mid
                if close(mid):
                    break
        k = min(real, key=lambda j: (abs(real[j] - target), j))
        if abs(real[k] - target) > tolerance:
            step = f"{round_to} more channels of a group" if round_to and round_to > 1 else "one more channel"
            note = (
                f"closest reachable reduction is {real[k]:.4f} for target {target:.4f}: removing "
                f"{step} changes MACs by more than the tolerance {tolerance}"
            )
    return layout.plan_from_pruned(masked(layout, cand, k)), real[k], note


# ----------------------------------------------------------------------------------------------
# the loop


def _prune_in_rounds(model, method, opts, target, ex, macs_before, data, tolerance, log):
    """Score with the method's scorer and prune, in one round or `steps` geometric ones; -> (the
    dependency graph that holds the history, note)."""
    scorer = SCORERS[method]
    scorer_opts = {k: opts[k] for k in scorer_options(scorer)}
    DG = build_graph(model, ex)  # one graph for all rounds: its history accumulates
    steps = int(opts.get("steps", 1))
    note = ""
    for step in range(1, steps + 1):
        # a method without rounds aims at the target itself; the geometric schedule's last round
        # at 1 - (1 - target), as it always has
        round_target = 1.0 - (1.0 - target) ** (step / steps) if "steps" in opts else target
        layout = Layout(model, DG, ex, layers=opts["layers"], transformer=opts["transformer"])
        data.target = round_target
        scores = scorer(model, layout, data, **scorer_opts)
        if opts.get("search") == "threshold":  # the AutoBot authors' stopping rule
            cand = _candidates(layout, scores, int(opts["min_channels"]))
            masked = _masker(opts["round_to"], int(opts["min_channels"]))
            k, _ = threshold_search(layout, scores, cand, round_target, macs_before, tolerance, log=log, masked=masked)
            plan, note = layout.plan_from_pruned(masked(layout, cand, k)), ""
            red = 1.0 - float(layout.estimate_macs((~masked(layout, cand, k)).float())) / macs_before
        else:
            plan, red, note = choose_plan(
                model,
                layout,
                scores,
                round_target,
                macs_before,
                ex,
                tolerance=tolerance,
                min_channels=int(opts["min_channels"]),
                round_to=opts["round_to"],
                exact=(step == steps),
                log=log,
            )
        apply_plan(DG, model, plan)
        if "steps" in opts:
            log(
                f"{method} step {step}/{steps}: removed {sum(len(v) for v in plan.values())} channels, MACs now "
                f"~{1 - red:.4f} of dense (round target {1 - round_target:.4f})"
            )
    return DG, note


def restores_weights(opts, loss_fn):
    """Does the pruned model get the dense weights back? "authors": only when the pruning loss is a
    PW variant (it reweights or corrects the targets), as the authors restore for every method but
    plain taylor (scripts/prune.py:226, prune/strategy.py:11, prune/utils.py:355-357)."""
    mode = opts.get("restore_weights", "never")
    pw = bool(getattr(loss_fn, "reweight", False) or getattr(loss_fn, "correct_targets", False))
    return mode == "always" or (mode == "authors" and pw)


def _restore_dense(model, dense, history, ex):
    """Load into the pruned `model` the weights (and BN statistics) of `dense` with the same channels
    removed: the recorded surgery replayed on the dense copy (with its attention's head counts)."""
    DG = build_graph(dense, ex)
    replay(DG, dense, history)
    model.load_state_dict(dense.state_dict())


def _loader_parts(loader):
    """(dataset, batch size) of a DataLoader as pwprune.train.make_loader builds it."""
    dataset = getattr(loader, "dataset", None)
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "sampler", None), "batch_size", None)
    if dataset is None or size is None:
        raise ValueError(
            "the taylor schedule 'authors' draws its own seeded batches: pass a "
            "torch DataLoader over the training split (pwprune.train.make_loader)"
        )
    return dataset, int(size)


def _taylor_authors(model, target, ex, data, opts, trajectory, log, dense=None):
    """The schedule "authors": Taylor's trajectory (trajectory.py), which scores as it goes."""
    from .trajectory import materialize, taylor_trajectory

    dataset, batch_size = _loader_parts(data.loader)
    if trajectory is not None:
        log(
            f"continuing the Taylor trajectory saved at target {trajectory['target']:.4f} "
            f"(batch {trajectory['batches']}, {int(trajectory['removed'].sum())} channels removed)"
        )
    snap = taylor_trajectory(
        model,
        [target],
        ex,
        dataset=dataset,
        batch_size=batch_size,
        loss_fn=data.loss_fn,
        teacher=data.teacher,
        device=data.device,
        seed=data.seed,
        opts=opts,
        resume=trajectory,
        log=log,
    )[-1]
    # dense (restore_weights): the kept channels get the weights the trajectory started from
    pruned, history = materialize(model if dense is None else dense, snap["plan"], ex)
    return pruned, history, snap["note"], snap["state"]


def rng_fork_devices(device) -> list[int]:
    """The CUDA devices whose RNG prune_to_target forks with the CPU's (torch.random.fork_rng), so
    its seeding leaves the caller's streams alone: `device`'s index on CUDA (the current device's
    for a bare "cuda"), none on a CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def prune_to_target(
    model,
    method,
    target_reduction,
    example_inputs,
    *,
    loader=None,
    loss_fn=None,
    teacher=None,
    device="cpu",
    seed=0,
    tolerance=0.02,
    log=print,
    trajectory=None,
    layers="all",
    transformer="all",
    **options,
):
    """Remove whole channels from `model` until `target_reduction` of its MACs are gone.

    method: a key of scorers.SCORERS; options: that method's (OPTIONS[method]), min_channels and
    round_to (every pruned group keeps a multiple of it; module docstring).
    Unknown options are refused with the method's valid ones. loader, loss_fn, teacher: what the
    data-driven methods score with (required by those, ignored by the others); seed seeds the
    random scores and, through a forked RNG, the draws of the data-driven methods.

    layers: "all" (every layer's MACs count and every group but the classifier's is prunable) or
    "conv" (only conv-rooted groups are pruned and only the full convolutions' MACs count, as the
    authors' code); see graph.LAYER_SCOPES. transformer: what a model with attention loses (heads,
    head_dims, mlp or all; names.TRANSFORMER_SCOPES, graph.py's docstring).

    The pruned model is `result.model`: `model` itself, pruned in place, except for the Taylor
    "authors" schedule, whose trajectory trains the dense-shaped `model` and returns a pruned
    copy. `trajectory` (that schedule only) is the saved state of a smaller target to continue
    from (pwprune.pruning.trajectory.load_state); result.trajectory is the state to save."""
    if method not in SCORERS:
        raise ValueError(f"unknown pruning method {method!r}; valid methods: {', '.join(SCORERS)}")
    try:
        target = float(target_reduction)
    except (TypeError, ValueError):
        raise ValueError(f"target_reduction must be a number in (0, 1), got {target_reduction!r}") from None
    if not 0.0 < target < 1.0:
        raise ValueError(f"target_reduction must be in (0, 1) (fraction of MACs removed), got {target_reduction!r}")
    opts = {**_resolve_options(method, options), "layers": check_layers(layers), "transformer": transformer}
    check_transformer(transformer)
    if opts.get("schedule") == "authors" and transformer != "all":
        raise ValueError(
            f"transformer {transformer!r} does not apply to Taylor's schedule 'authors', whose trajectory "
            "prunes every unit (transformer 'all'); use schedule 'geometric'"
        )
    authors = opts.get("schedule") == "authors"
    if trajectory is not None and not authors:
        raise ValueError(
            "trajectory= continues a Taylor trajectory; it applies only to method 'taylor' with schedule 'authors'"
        )
    if opts.get("tolerance_pw") is not None and getattr(loss_fn, "reweight", False):
        tolerance = float(opts["tolerance_pw"])  # a reweighting loss: the authors' sw_autobot epsilon

    device = torch.device(device)
    model.to(device)
    ex = example_inputs.to(device)
    data = ScoringData(
        method, loader=loader, loss_fn=loss_fn, teacher=teacher, device=device, seed=seed, target=target, log=log
    )
    total_before, params_before = macs_params_on_device(model, ex)
    macs_before = total_before if layers == "all" else counted_macs(model, ex, layers)
    log(
        f"pruning with {method} to remove {target:.4f} of {macs_before:,} MACs "
        f"({'every layer' if layers == 'all' else 'full convolutions only'}; tolerance {tolerance})"
    )
    # fork the RNG so seeding here (dropout in Taylor's steps) leaves the caller's stream alone
    fork_devices = rng_fork_devices(device)
    state, history = None, None
    restore = restores_weights(opts, loss_fn)
    dense = copy.deepcopy(model) if restore else None
    if restore:
        log(
            f"the pruned model gets the dense weights of the kept channels ({method} restore_weights "
            f"{opts['restore_weights']!r})"
        )
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        if authors:
            model, history, note, state = _taylor_authors(model, target, ex, data, opts, trajectory, log, dense=dense)
        else:
            DG, note = _prune_in_rounds(model, method, opts, target, ex, macs_before, data, tolerance, log)
            if restore:
                _restore_dense(model, dense, DG.pruning_history(), ex)

    total_after, params_after = macs_params_on_device(model, ex)
    macs_after = total_after if layers == "all" else counted_macs(model, ex, layers)
    achieved = 1.0 - macs_after / macs_before
    within = abs(achieved - target) <= tolerance
    if not within and not note:
        note = f"achieved reduction {achieved:.4f} is outside {target:.4f} +- {tolerance}"
    log(
        f"pruned ({method}): MACs {macs_before:,} -> {macs_after:,} (removed {achieved:.4f}, target {target:.4f}), "
        f"params {params_before:,} -> {params_after:,}"
        + (f"; {note}" if note else "")
        + (
            ""
            if layers == "all"
            else f"; every layer's MACs {total_before:,} -> {total_after:,} "
            f"(removed {1.0 - total_after / total_before:.4f})"
        )
    )
    history = history if history is not None else DG.pruning_history()
    return PruneResult(
        model=model,
        history=copy.deepcopy(history),
        macs_before=macs_before,
        macs_after=macs_after,
        params_before=params_before,
        params_after=params_after,
        achieved_reduction=achieved,
        target_reduction=target,
        within_tolerance=within,
        note=note,
        trajectory=state,
        counted_layers=layers,
        total_macs_before=total_before,
        total_macs_after=total_after,
    )
