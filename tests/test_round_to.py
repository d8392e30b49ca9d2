"""round_to (pwprune.pruning.target): every pruned group keeps a multiple of N channels, measured on
the pruned models' real convs, while the achieved MAC reduction stays within the tolerance."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from pwprune.models import arch_dict, build_from_arch, example_input
from pwprune.pruning import prune_to_target
from pwprune.pruning.target import _rounded_keep

TOL = 0.02
QUIET = dict(log=lambda *a: None)


def conv_outs(model):
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


class Uneven(nn.Module):
    """A plain CNN whose groups are smaller than 8 (6), not a multiple of 8 (20, 44) or one (24, 64)."""

    widths = (6, 20, 24, 44, 64)

    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for w in self.widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def prune_uneven(target=0.5, **options):
    torch.manual_seed(0)
    model = Uneven()
    res = prune_to_target(model, "magnitude", target, torch.zeros(1, 3, 8, 8), **options, **QUIET)
    return model, res


def resnet18(round_to, method="magnitude", size=32, target=0.75, **options):
    arch = arch_dict("resnet18", 10, 3, size)
    torch.manual_seed(0)
    dense = conv_outs(build_from_arch(arch))
    torch.manual_seed(0)
    model = build_from_arch(arch)
    res = prune_to_target(model, method, target, example_input(arch), round_to=round_to, **options, **QUIET)
    return arch, dense, model, res


# ---------------------------------------------------------------- the rounding rule


@pytest.mark.parametrize("n", [3, 8, 12, 20, 64, 100])
@pytest.mark.parametrize("round_to", [4, 8, 16])
@pytest.mark.parametrize("min_channels", [1, 10])
def test_kept_counts_are_multiples_or_whole_and_grow_with_the_unrounded_count(n, round_to, min_channels):
    least = -(-min_channels // round_to) * round_to
    kept = [_rounded_keep(raw, n, round_to, least) for raw in range(min(min_channels, n), n + 1)]
    assert all(k == n or (k % round_to == 0 and min_channels <= k <= n) for k in kept), kept
    assert all(k > 0 for k in kept)
    assert kept == sorted(kept)  # nested in k: the bisection stays sound
    assert kept[-1] == n  # nothing removed -> nothing rounded away
    if n < least:  # no multiple of round_to to prune to: the group stays whole
        assert set(kept) == {n}


# ---------------------------------------------------------------- real pruned models


def test_uneven_groups_keep_multiples_or_stay_whole():
    model, res = prune_uneven(round_to=8)
    outs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert abs(res.achieved_reduction - 0.5) <= TOL and res.within_tolerance, res
    assert outs[0] == 6  # smaller than 8: never pruned (never to 0, never rounded up)
    for w, out in zip(Uneven.widths, outs):
        assert out == w or (out % 8 == 0 and 0 < out < w), (Uneven.widths, outs)
    assert any(out < w for w, out in zip(Uneven.widths, outs))
    # the unrounded pruning of the same model leaves counts that are not multiples of 8
    plain, res = prune_uneven()
    plain_outs = [m.out_channels for m in plain.features if isinstance(m, nn.Conv2d)]
    assert abs(res.achieved_reduction - 0.5) <= TOL
    assert any(out % 8 and out != w for w, out in zip(Uneven.widths, plain_outs)), plain_outs


@pytest.mark.slow
def test_round_to_one_is_no_rounding():
    a, _ = prune_uneven()
    b, _ = prune_uneven(round_to=1)
    assert conv_outs(a) == conv_outs(b)


@pytest.mark.slow
@pytest.mark.parametrize("round_to", [8, 16])
def test_resnet18_convs_are_multiples_within_tolerance(round_to):
    arch, dense, model, res = resnet18(round_to)
    outs = conv_outs(model)
    assert all(c % round_to == 0 for c in outs.values()), outs
    assert sum(outs.values()) < sum(dense.values()) * 0.7  # it really pruned
    assert abs(res.achieved_reduction - 0.75) <= TOL and res.within_tolerance, res.note
    # the recorded surgery replays on a fresh model (what a checkpoint stores) to the same counts
    fresh = build_from_arch(arch)
    DG = tp.DependencyGraph().build_dependency(fresh, example_inputs=example_input(arch))
    DG.load_pruning_history(res.history)
    assert conv_outs(fresh) == outs
    assert fresh(example_input(arch)).shape == (1, 10)


@pytest.mark.slow
def test_resnet18_without_round_to_is_not_all_multiples():
    _, dense, model, res = resnet18(None)
    outs = conv_outs(model)
    assert abs(res.achieved_reduction - 0.75) <= TOL
    assert any(c % 8 for c in outs.values()), outs  # else the tests above would prove nothing


@pytest.mark.slow
def test_geometric_rounds_and_threshold_search_round_too():
    """Every round of Taylor's geometric schedule, and AutoBot's threshold search, round. (The
    threshold search stops where the authors' rule does, which need not be within the tolerance of
    gates this briefly trained, with or without round_to.)"""
    x = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(32) % 10
    loader = [(x[i : i + 16], y[i : i + 16], torch.zeros(16), torch.arange(i, i + 16)) for i in (0, 16)]

    def ce(logits, teacher_logits, targets):
        return F.cross_entropy(logits, targets)

    for method, opts in [
        ("taylor", dict(steps=3, batches_per_step=1)),
        ("autobot", dict(iterations=5, search="threshold")),
    ]:
        torch.manual_seed(0)
        model = Uneven()
        res = prune_to_target(
            model, method, 0.5, torch.zeros(1, 3, 8, 8), loader=loader, loss_fn=ce, round_to=8, **opts, **QUIET
        )
        outs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
        assert all(out == w or out % 8 == 0 for w, out in zip(Uneven.widths, outs)), (method, outs)
        assert any(out < w for w, out in zip(Uneven.widths, outs)), (method, outs)
        if method == "taylor":
            assert abs(res.achieved_reduction - 0.5) <= TOL, res.achieved_reduction


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("bad", [0, -1, 2.5, "8", True])
def test_bad_round_to_is_refused(bad):
    with pytest.raises(ValueError, match=r"round_to must be an integer >= 1 .* or null \(no rounding\), got"):
        prune_uneven(round_to=bad)


def test_round_to_is_refused_with_the_authors_trajectory():
    with pytest.raises(ValueError, match=r"round_to \(8\) does not apply to schedule 'authors'.*prunes_per_step"):
        prune_to_target(Uneven(), "taylor", 0.5, torch.zeros(1, 3, 8, 8), schedule="authors", round_to=8, **QUIET)


def test_params_yaml_takes_round_to_in_each_method_block():
    import copy

    from helpers import REPO
    from pwprune import config as pc

    schema = REPO / "workflow" / "schemas" / "params.schema.yaml"
    cfg = pc.load_yaml_strict(REPO / "params.yaml")
    cfg["active"] = ["default"]
    good = copy.deepcopy(cfg)
    prune = good["experiments"]["default"]["prune"]
    for method, value in zip(["random", "magnitude", "taylor", "autobot"], [8, 16, None, 1]):
        prune.setdefault(method, {})["round_to"] = value
    assert pc.validate(good, schema)["experiments"]["default"]["prune"]["random"] == {"round_to": 8}
    for bad in (0, 2.5, "8"):
        wrong = copy.deepcopy(cfg)
        wrong["experiments"]["default"]["prune"].setdefault("magnitude", {})["round_to"] = bad
        with pytest.raises(pc.ConfigError, match=r"prune\.magnitude\.round_to"):
            pc.validate(wrong, schema)
