"""What pruning buys and what it costs.

latency_speedup: measured CPU latency of each pruned model against the dense one (dense and
pruned timed alternately, so load drift on a shared machine hits both), next to the MACs ratio.
At the goal's target (0.75) each method's model is also pruned with round_to 8 and 16 (every
pruned group keeps a multiple of that many channels; pwprune.pruning.target), and the dense model
and the three pruned ones are timed in turn in one loop: rows with round_to=1 are the unrounded
model, speedup_vs_unrounded is the unrounded model's latency over the rounded one's.
pruning_time_s: wall time of each method to reach each target on the CIFAR ResNet-56.
taylor_trajectory_saving: how much faster the Taylor "authors" schedule reaches every target when
each target continues from the previous one (the DAG's chain) than from the dense model each time.

Data-driven methods (Taylor, AutoBot) get small random data: the point is the architecture they
produce and the time they take, not its accuracy.
"""

from __future__ import annotations

import copy
import statistics
import time

from . import log, result

# model -> (num_classes, input size, pruning batch, random samples, method options)
# ResNet-56: the default experiment's Taylor schedule (8 rounds of 2 batches) and 40 AutoBot
# iterations (the figures report them; time grows about linearly with batches/iterations);
# ResNet-18 at 224 px gets a few cheap data-driven steps, enough to produce an architecture.
CASES = {
    "resnet56": dict(
        num_classes=10,
        size=32,
        batch=32,
        samples=256,
        options={"taylor": {"steps": 8, "batches_per_step": 2}, "autobot": {"iterations": 40}},
    ),
    "resnet18": dict(
        num_classes=1000,
        size=224,
        batch=8,
        samples=16,
        options={"taylor": {"steps": 3, "batches_per_step": 1}, "autobot": {"iterations": 4}},
    ),
}
LATENCY_REPEATS = {("resnet18", 32): 3}  # else DEFAULT_REPEATS
DEFAULT_REPEATS = 10
GOAL_TARGET, GOAL_FRACTION = 0.75, 0.7
ROUND_TO = (1, 8, 16)  # the round_to variants timed at GOAL_TARGET (1: no rounding)

_dense, _pruned = {}, {}  # caches shared by the two benchmarks within one run


class RandomData:
    """(x, y, g, idx) samples of seeded random images: the pipeline's batch format."""

    def __init__(self, n, size, num_classes, seed=0):
        import torch

        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=gen)
        self.y = torch.randint(0, num_classes, (n,), generator=gen)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        import torch

        return self.x[i], self.y[i], torch.tensor(0), torch.tensor(i)


def dense(model_name):
    """(model, arch, example input) with a fixed init."""
    import torch

    from pwprune.models import arch_dict, build_from_arch, example_input

    if model_name not in _dense:
        if model_name not in CASES:
            raise ValueError(f"unknown benchmark model {model_name!r}; valid: {', '.join(CASES)}")
        c = CASES[model_name]
        arch = arch_dict(model_name, c["num_classes"], 3, c["size"])
        torch.manual_seed(0)
        _dense[model_name] = (build_from_arch(arch).eval(), arch, example_input(arch))
    return _dense[model_name]


def _out_channels(model):
    import torch.nn as nn

    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def pruned(model_name, method, target, round_to=1):
    """Prune a copy of the dense model (cached): -> dict(model, seconds, macs_ratio, ...)."""
    key = (model_name, method, float(target), int(round_to or 1))
    if key in _pruned:
        return _pruned[key]
    from pwprune.loss import make_loss
    from pwprune.pruning import prune_to_target
    from pwprune.train import make_loader

    c = CASES[model_name]
    model0, _, ex = dense(model_name)
    model = copy.deepcopy(model0)
    kwargs = dict(c["options"].get(method, {}))
    if key[-1] > 1:
        kwargs["round_to"] = key[-1]
    if method in ("taylor", "autobot"):
        ds = RandomData(c["samples"], c["size"], c["num_classes"])
        kwargs.update(loader=make_loader(ds, c["batch"], shuffle=True, seed=0), loss_fn=make_loss("ce"))
    t0 = time.perf_counter()
    res = prune_to_target(model, method, target, ex, seed=0, log=lambda *a: None, **kwargs)
    seconds = time.perf_counter() - t0
    model.eval()
    removed = _out_channels(model0) - _out_channels(model)
    _pruned[key] = dict(
        model=model,
        seconds=seconds,
        macs_ratio=res.macs_before / res.macs_after,
        achieved=res.achieved_reduction,
        channels_removed=removed,
        options=kwargs,
    )
    log(
        f"  {model_name} {method} {target}" + (f" round_to {key[-1]}" if key[-1] > 1 else "") + f": {seconds:.1f} s, "
        f"achieved {res.achieved_reduction:.3f}, {removed} channels removed"
    )
    return _pruned[key]


def interleaved_latency(models, x, repeats, warmup=1):
    """Median seconds per forward of each model on x, timed in turn (a, b, c, a, b, c, ...)."""
    import torch

    times = [[] for _ in models]
    with torch.no_grad():
        for _ in range(warmup):
            for m in models:
                m(x)
        for _ in range(repeats):
            for m, t in zip(models, times):
                t0 = time.perf_counter()
                m(x)
                t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def paired_latency(a, b, x, repeats, warmup=1):
    """Median seconds per forward of a and b on x, timed alternately (a, b, a, b, ...)."""
    return tuple(interleaved_latency([a, b], x, repeats, warmup))


def latency(models, batches, methods, targets, repeats=None, quick=False):
    import torch

    out = []
    for name in models:
        model0, _, ex = dense(name)
        for method in methods:
            # --quick: ResNet-18 at 224 px only at the goal's target (its pruning is the slow part)
            for target in [t for t in targets if not (quick and name == "resnet18" and abs(t - GOAL_TARGET) > 1e-9)]:
                goal_target = abs(target - GOAL_TARGET) < 1e-9
                variants = ROUND_TO if goal_target else (1,)
                ps = [pruned(name, method, target, r) for r in variants]
                for batch in batches:
                    reps = repeats or LATENCY_REPEATS.get((name, batch), DEFAULT_REPEATS)
                    x = ex.repeat(batch, 1, 1, 1)
                    td, *tps = interleaved_latency([model0] + [p["model"] for p in ps], x, reps)
                    for r, p, tp_ in zip(variants, ps, tps):
                        speedup = td / tp_
                        goal, met = None, None
                        if goal_target:
                            goal = f">= {GOAL_FRACTION} x macs_ratio ({GOAL_FRACTION * p['macs_ratio']:.2f})"
                            met = speedup >= GOAL_FRACTION * p["macs_ratio"]
                        out.append(
                            result(
                                "latency_speedup",
                                speedup,
                                "x dense",
                                goal,
                                met,
                                model=name,
                                batch=batch,
                                method=method,
                                target_reduction=target,
                                round_to=r,
                                achieved_reduction=p["achieved"],
                                macs_ratio=p["macs_ratio"],
                                speedup_per_macs_ratio=speedup / p["macs_ratio"],
                                speedup_vs_unrounded=tps[0] / tp_,
                                dense_ms=1000 * td / batch,
                                pruned_ms=1000 * tp_ / batch,
                                input_size=CASES[name]["size"],
                                threads=torch.get_num_threads(),
                                repeats=reps,
                            )
                        )
                        log(
                            f"latency {name} b{batch} {method} {target} round_to {r}: {speedup:.2f}x "
                            f"(MACs {p['macs_ratio']:.2f}x, {speedup / p['macs_ratio']:.2f} of it)"
                        )
    return out


def pruning_time(methods, targets, model_name="resnet56"):
    out = []
    for method in methods:
        for target in targets:
            p = pruned(model_name, method, target)
            extra = {}
            if method == "taylor":
                from pwprune.pruning.target import OPTIONS

                steps = p["options"].get("steps", OPTIONS["taylor"]["steps"])
                extra = dict(
                    steps=steps,
                    channels_per_step=p["channels_removed"] / steps,
                    batches=steps * p["options"].get("batches_per_step", OPTIONS["taylor"]["batches_per_step"]),
                )
            elif method == "autobot":
                from pwprune.pruning.target import OPTIONS

                extra = dict(iterations=p["options"].get("iterations", OPTIONS["autobot"]["iterations"]))
            out.append(
                result(
                    "pruning_time_s",
                    p["seconds"],
                    "s",
                    None,
                    None,
                    model=model_name,
                    method=method,
                    target_reduction=target,
                    achieved_reduction=p["achieved"],
                    channels_removed=p["channels_removed"],
                    batch=CASES[model_name]["batch"],
                    **extra,
                )
            )
    return out


# The Taylor trajectory (schedule "authors"): each target pruned from the dense model in its own
# job, against one chain in which each target continues from the previous one's saved state.
# small_cnn: the default experiment's model, input and targets, with the authors' schedule
# (prune 1 channel every 5 SGD batches of 64). ResNet-56: the paper's CIFAR-10 targets; 16
# channels every batch of 16 instead of 1 every 5 batches of 128, so it runs in a minute on a
# CPU (the saving is a ratio of batches, which the schedule scales alike in both arms).
TRAJECTORY_CASES = {
    "small_cnn": dict(
        num_classes=10,
        size=12,
        batch=64,
        samples=512,
        targets=[0.75, 0.875],
        options=dict(batches_per_step=5, prunes_per_step=1, lr=0.01, momentum=0.0, min_channels=1),
    ),
    "resnet56": dict(
        num_classes=10,
        size=32,
        batch=16,
        samples=256,
        targets=[0.25, 0.5, 0.75, 0.875, 0.9375],
        options=dict(batches_per_step=1, prunes_per_step=16, lr=0.01, momentum=0.0, min_channels=1),
    ),
}


def trajectory_saving(model_name):
    import torch
    import torch.nn.functional as F

    from pwprune.models import arch_dict, build_from_arch, example_input
    from pwprune.pruning.trajectory import taylor_trajectory

    case = TRAJECTORY_CASES[model_name]
    torch.manual_seed(0)
    arch = arch_dict(model_name, case["num_classes"], 3, case["size"])
    model = build_from_arch(arch)
    data = RandomData(case["samples"], case["size"], case["num_classes"])

    def ce(logits, teacher_logits, targets):
        return F.cross_entropy(logits, targets)

    def one(target, resume):
        t0 = time.perf_counter()
        snap = taylor_trajectory(
            copy.deepcopy(model),
            [target],
            example_input(arch),
            dataset=data,
            batch_size=case["batch"],
            loss_fn=ce,
            opts=case["options"],
            resume=resume,
            log=lambda *a: None,
        )[0]
        return snap, time.perf_counter() - t0

    independent = chained = 0.0
    batches_independent, state, snaps = 0, None, []
    for target in case["targets"]:  # the two arms alternate, so load drift hits both
        snap, sec = one(target, None)
        independent += sec
        batches_independent += snap["batches"]
        snap, sec = one(target, state)
        chained += sec
        state = snap["state"]
        snaps.append(snap)
    # the geometric schedule (the default experiment's 8 rounds of 2 batches) for scale
    from pwprune.pruning import prune_to_target

    loader = torch.utils.data.DataLoader(
        data, batch_size=case["batch"], shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    t0 = time.perf_counter()
    for target in case["targets"]:
        prune_to_target(
            copy.deepcopy(model),
            "taylor",
            target,
            example_input(arch),
            loader=loader,
            loss_fn=ce,
            log=lambda *a: None,
            schedule="geometric",
            steps=8,
            batches_per_step=2,
        )
    geometric = time.perf_counter() - t0
    log(
        f"  taylor trajectory {model_name}: {independent:.1f} s as separate jobs, {chained:.1f} s chained; "
        f"geometric schedule {geometric:.1f} s"
    )
    return [
        result(
            "taylor_trajectory_saving",
            independent / chained,
            "x",
            None,
            None,
            model=model_name,
            targets=" ".join(map(str, case["targets"])),
            independent_s=independent,
            chained_s=chained,
            geometric_s=geometric,
            batches_independent=batches_independent,
            batches_chained=snaps[-1]["batches"],
            **{k: v for k, v in case["options"].items() if k != "min_channels"},
            batch=case["batch"],
        )
    ]


def run(names, opts):
    out = []
    if "taylor_trajectory_saving" in names:
        for model_name in TRAJECTORY_CASES:
            out += trajectory_saving(model_name)
    if "pruning_time_s" in names:
        out += pruning_time(opts.methods, opts.targets)
    if "latency_speedup" in names:
        out += latency(opts.models, opts.batches, opts.methods, opts.targets, opts.repeats, opts.quick)
    return out
