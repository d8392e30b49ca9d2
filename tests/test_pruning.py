import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from pwprune.models import arch_dict, build_from_arch, classifier_layers, example_input, num_outputs
from pwprune.names import DATA_FREE_METHODS
from pwprune.pruning import PRUNING_METHODS, PruneResult, prune_to_target

TOL = 0.02
# small but real settings for the data-driven methods, so the suite stays fast on CPU
FAST = {
    "random": {},
    "magnitude": {},
    "taylor": {"steps": 3, "batches_per_step": 2},
    "autobot": {"iterations": 15},
    "fairgrape": {"batches": 2},
    "fairprune": {"batches": 1},
}


def make_loader(num_classes=10, c=3, s=32, n=48, bs=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, s, s, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    grp = torch.randint(0, 2, (n,), generator=g)
    return [(x[i : i + bs], y[i : i + bs], grp[i : i + bs], torch.arange(i, min(i + bs, n))) for i in range(0, n, bs)]


def ce(logits, teacher_logits, targets):
    if logits.dim() == 1 or logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), targets)
    return F.cross_entropy(logits, targets)


def run(
    name,
    method,
    target,
    num_classes=10,
    in_channels=3,
    size=32,
    seed=0,
    loss_fn=ce,
    teacher=None,
    tolerance=TOL,
    **options,
):
    torch.manual_seed(0)
    arch = arch_dict(name, num_classes, in_channels, size)
    model = build_from_arch(arch)
    data = {}
    if method not in DATA_FREE_METHODS:
        data = {"loader": make_loader(num_classes, in_channels, size), "loss_fn": loss_fn, "teacher": teacher}
    opts = {**FAST[method], **options}
    logs = []
    result = prune_to_target(
        model, method, target, example_input(arch), seed=seed, tolerance=tolerance, log=logs.append, **data, **opts
    )
    return arch, result, logs


# methods that only remove channels: the pruned model is the dense one minus them, bit for bit
WEIGHT_PRESERVING = ("random", "magnitude", "autobot", "fairgrape", "fairprune")


def check_pruned(arch, result, target, method=None):
    """Everything a pruned model must satisfy, whatever the method. With `method` given, a
    method that leaves weights alone must have removed exactly the channels its history names
    from the dense model `run` built, and changed nothing else."""
    model = result.model
    assert isinstance(result, PruneResult)
    assert result.target_reduction == target
    assert abs(result.achieved_reduction - target) <= TOL, (result.achieved_reduction, result.note)
    assert result.within_tolerance and result.note == ""
    assert result.macs_after < result.macs_before and result.params_after < result.params_before
    macs, params = tp.utils.count_ops_and_params(model, example_input(arch))
    assert (int(macs), int(params)) == (result.macs_after, result.params_after)
    assert result.achieved_reduction == pytest.approx(1 - result.macs_after / result.macs_before)
    # no layer emptied, logits untouched
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels >= 1 and m.in_channels >= 1
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_features >= 1
    (clf,) = classifier_layers(model)
    assert clf.out_features == num_outputs(arch["num_classes"])
    model.eval()
    x = torch.randn(3, arch["in_channels"], arch["input_size"], arch["input_size"])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, num_outputs(arch["num_classes"]))
    assert torch.isfinite(out).all()
    # the history replays on a fresh model of the same arch (what checkpoint loading does)
    assert json.loads(json.dumps(result.history)) == result.history
    fresh = build_from_arch(arch)
    DG = tp.DependencyGraph().build_dependency(fresh, example_inputs=example_input(arch))
    DG.load_pruning_history(result.history)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh(x), out, atol=1e-5)
    if method in WEIGHT_PRESERVING:
        torch.manual_seed(0)  # the dense model of `run`, rebuilt
        dense = build_from_arch(arch)
        DG = tp.DependencyGraph().build_dependency(dense, example_inputs=example_input(arch))
        DG.load_pruning_history(result.history)
        pruned_state, replayed = model.state_dict(), dense.state_dict()
        assert pruned_state.keys() == replayed.keys()
        changed = [k for k in replayed if not torch.equal(replayed[k].cpu(), pruned_state[k].cpu())]
        assert not changed, f"{method}: weights other than the removed channels changed: {changed[:5]}"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", PRUNING_METHODS)
@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
@pytest.mark.parametrize("target", [0.5, 0.875])
def test_methods_hit_target_on_resnets(method, name, target):
    arch, result, logs = run(name, method, target)
    check_pruned(arch, result, target, method)
    assert any("MACs" in line for line in logs)


def test_resnet56_magnitude():
    arch, result, _ = run("resnet56", "magnitude", 0.875)
    check_pruned(arch, result, 0.875, "magnitude")


@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_small_cnn_extreme_target(method):
    arch, result, _ = run("small_cnn", method, 0.9375, in_channels=1, size=16)
    check_pruned(arch, result, 0.9375, method)


@pytest.mark.slow
@pytest.mark.parametrize("name,target", [("vgg16", 0.75), ("efficientnet_v2_s", 0.5)])
def test_magnitude_keeps_concat_se_residual_consistent(name, target):
    arch, result, _ = run(name, "magnitude", target)
    check_pruned(arch, result, target, "magnitude")


def test_magnitude_l1_differs_from_l2_but_both_hit_target():
    _, r1, _ = run("resnet20", "magnitude", 0.5, norm=1)
    _, r2, _ = run("resnet20", "magnitude", 0.5, norm=2)
    assert abs(r1.achieved_reduction - 0.5) <= TOL and abs(r2.achieved_reduction - 0.5) <= TOL
    assert r1.history != r2.history  # the two norms rank resnet20's channels differently


@pytest.mark.slow
@pytest.mark.parametrize("method", ["taylor", "autobot"])
def test_binary_single_logit_model(method):
    arch, result, _ = run("resnet20", method, 0.5, num_classes=2, in_channels=1)
    check_pruned(arch, result, 0.5, method)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["taylor", "autobot"])
def test_data_driven_methods_use_teacher(method):
    torch.manual_seed(1)
    dense = build_from_arch(arch_dict("resnet20", 10, 3, 32)).eval()
    seen = {"teacher": 0, "loss_with_teacher": 0}

    def teacher(x, idx):
        seen["teacher"] += 1
        assert idx.dtype == torch.long and len(idx) == len(x)
        with torch.no_grad():
            return dense(x)

    def pw_like(logits, teacher_logits, targets):
        # stand-in for the PW loss: weight samples by how hard the teacher finds them
        assert teacher_logits is not None and teacher_logits.shape == logits.shape
        seen["loss_with_teacher"] += 1
        p_true = teacher_logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
        w = 0.5 + 0.5 * (1 - p_true)
        return (w * F.cross_entropy(logits, targets, reduction="none")).mean()

    arch, result, _ = run("resnet20", method, 0.5, loss_fn=pw_like, teacher=teacher)
    check_pruned(arch, result, 0.5, method)
    assert seen["teacher"] > 0 and seen["loss_with_teacher"] == seen["teacher"]


@pytest.mark.slow
def test_taylor_prunes_iteratively_and_history_accumulates():
    _, result, logs = run("resnet20", "taylor", 0.75, steps=4, batches_per_step=2)
    steps = [line for line in logs if line.startswith("taylor step")]
    assert len(steps) == 4
    # every round removes channels, so the single graph's history holds entries from all rounds
    assert len(result.history) > 12


@pytest.mark.slow
@pytest.mark.parametrize("method", ["random", "taylor"])
def test_same_seed_same_architecture(method):
    _, a, _ = run("resnet20", method, 0.5, seed=3)
    _, b, _ = run("resnet20", method, 0.5, seed=3)
    assert a.history == b.history
    if method == "random":
        _, c, _ = run("resnet20", method, 0.5, seed=4)
        assert c.history != a.history


def test_unreachable_target_is_reported():
    # one channel per layer still leaves ~0.13% of the MACs: a tight tolerance makes it unreachable
    arch, result, _ = run("small_cnn", "magnitude", 0.99999, in_channels=1, size=16, tolerance=1e-4)
    assert not result.within_tolerance and result.achieved_reduction > 0.99
    assert "not reachable" in result.note
    # it still prunes as far as allowed: one channel left per group
    convs = [m for m in result.model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels == 1 for c in convs)


def test_min_channels_is_respected():
    _, result, _ = run("small_cnn", "random", 0.9375, in_channels=1, size=16, min_channels=4)
    convs = [m for m in result.model.modules() if isinstance(m, nn.Conv2d)]
    assert min(c.out_channels for c in convs) >= 4


@pytest.mark.parametrize("target", [0.0, 1.0, -0.5, 1.5, "half"])
def test_bad_target_raises(target):
    arch = arch_dict("small_cnn", 10, 1, 16)
    with pytest.raises(ValueError, match="target_reduction"):
        prune_to_target(build_from_arch(arch), "magnitude", target, example_input(arch))


def test_bad_method_and_options_raise():
    arch = arch_dict("small_cnn", 10, 1, 16)
    model, ex = build_from_arch(arch), example_input(arch)
    with pytest.raises(ValueError, match="'obd'.*random"):
        prune_to_target(model, "obd", 0.5, ex)
    with pytest.raises(ValueError, match="stepz"):
        prune_to_target(model, "taylor", 0.5, ex, loader=make_loader(), loss_fn=ce, stepz=3)
    with pytest.raises(ValueError, match="norm"):
        prune_to_target(model, "magnitude", 0.5, ex, norm=3)
    with pytest.raises(ValueError, match="loader"):
        prune_to_target(model, "autobot", 0.5, ex)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["taylor", "autobot"])
def test_data_driven_methods_on_efficientnet(method):
    # SE blocks and depthwise convs: the probes/gates sit on coupled BN outputs across them
    opts = {"taylor": {"steps": 2, "batches_per_step": 1}, "autobot": {"iterations": 5}}[method]
    arch, result, _ = run("efficientnet_v2_s", method, 0.75, **opts)
    check_pruned(arch, result, 0.75, method)
