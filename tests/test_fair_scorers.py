"""The group-aware baselines (pwprune.pruning.fair; docs/fair-baselines.md): FairGRAPE's per-group
Taylor importance and greedy share-keeping selection, FairPrune's per-group OBD/Fisher saliency
and privileged/unprivileged score, each checked against an independent plain-torch computation
or hand arithmetic on tiny models, then pruned to a MAC target by the common machinery."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import pwprune.config as pc
from helpers import REPO
from pwprune.pruning import prune_to_target
from pwprune.pruning.fair import (
    fairprune_scores,
    greedy_keep_order,
    greedy_scores,
    group_fisher,
    group_taylor,
    group_weights,
)
from pwprune.pruning.graph import Layout, build_graph

quiet = dict(log=lambda *_: None)


def ce(logits, teacher_logits, targets):
    return F.cross_entropy(logits, targets)


class TwoConv(nn.Module):
    """conv1 -> BN -> ReLU -> conv2 -> ReLU -> mean pool -> fc: two prunable groups (conv1+bn1+
    conv2's inputs; conv2+fc's inputs)."""

    def __init__(self, c1=4, c2=3, classes=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc = nn.Linear(c2, classes)
        with torch.no_grad():  # BN statistics other than the identity, so eval mode matters
            self.bn1.running_mean.uniform_(-0.2, 0.2)
            self.bn1.running_var.uniform_(0.5, 1.5)
            self.bn1.weight.uniform_(0.5, 1.5)
            self.bn1.bias.uniform_(-0.3, 0.3)

    def parts(self, x):
        a1 = self.bn1(self.conv1(x))
        a2 = self.conv2(F.relu(a1))
        return a1, a2, self.fc(F.relu(a2).mean((2, 3)))

    def forward(self, x):
        return self.parts(x)[2]


def two_group_batches(n=12, bs=6, size=5, seed=1):
    g_ = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g_)
    y = torch.randint(0, 2, (n,), generator=g_)
    g = torch.tensor([0, 1, 0, 0, 1, 0] * (n // 6))
    return [(x[i : i + bs], y[i : i + bs], g[i : i + bs], torch.arange(i, i + bs)) for i in range(0, n, bs)]


def layout_of(model, ex):
    return Layout(model, build_graph(model, ex), ex)


def flat_index(layout, module, channel):
    local, flat = layout.sites[module]
    return int(flat[(local == channel).nonzero().item()])


# ---------------------------------------------------------------- FairGRAPE


def test_group_taylor_equals_per_sample_activation_times_gradient_by_group():
    m = TwoConv().eval()
    ex = torch.zeros(1, 1, 5, 5)
    layout = layout_of(m, ex)
    batches = two_group_batches()
    ref = copy.deepcopy(m).eval()
    got = group_taylor(m, layout, batches, [0, 1], ce, None, "cpu")
    # independent: one sample at a time, the feature maps' own activation x gradient
    sums, counts = torch.zeros(layout.total, 2, dtype=torch.float64), torch.zeros(2)
    for x, y, g, _ in batches:
        for i in range(len(y)):
            a1, a2, logits = ref.parts(x[i : i + 1])
            a1.retain_grad(), a2.retain_grad()
            F.cross_entropy(logits, y[i : i + 1]).backward()
            for name, a in (("bn1", a1), ("conv2", a2)):
                t = (a * a.grad).sum((2, 3)).abs().squeeze(0)
                for c in range(len(t)):
                    sums[flat_index(layout, name, c), int(g[i])] += float(t[c].detach())
            counts[int(g[i])] += 1
    assert layout.total == 7 and set(layout.sites) == {"bn1", "conv2"}
    assert torch.allclose(got.double(), sums / counts, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(got[:, 0], got[:, 1])  # the two groups see different channels
    # measuring changes no weight or statistic
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values()))


def test_greedy_keep_order_by_hand():
    imp = torch.tensor([[4.0, 0.0], [0.0, 1.0], [3.0, 3.0], [1.0, 0.0]])
    # targets (8, 4) / 12 = (2/3, 1/3); shares start at (1/2, 1/2):
    # group 0 is furthest below -> its best, unit 0; kept sums (4, 0) -> shares (1, 0)
    # group 1 below -> its best, unit 2; sums (7, 3) -> (.7, .3)
    # group 1 below (-.033) -> its next, unit 1; sums (7, 4) -> (.636, .364)
    # group 0 below -> units 0 and 2 already kept, so unit 3
    assert greedy_keep_order(imp) == [0, 2, 1, 3]
    # plain (summed) Taylor would keep unit 2 first and rank 1 and 3 level
    assert greedy_keep_order(torch.tensor([[1.0], [3.0], [2.0]])) == [1, 2, 0]  # one group: by importance


def shares(imp, kept):
    s = imp[kept].sum(0)
    return s / s.sum()


def test_fairgrape_keeps_group_shares_closer_to_dense_than_taylor_ranking():
    """A majority group dominates the summed importance: ranking by the sum keeps only its
    channels; the greedy selection keeps the minority's share."""
    imp = torch.tensor(
        [
            [9.0, 0.1],
            [8.0, 0.2],
            [7.0, 0.1],
            [6.0, 0.3],
            [0.5, 3.0],  # matter to group 1 only
            [0.4, 2.5],
            [0.3, 2.0],
            [0.2, 0.1],
        ]
    )
    dense = imp.sum(0) / imp.sum()
    for keep in (3, 4, 5):
        by_sum = torch.argsort(imp.sum(1), descending=True, stable=True)[:keep]
        greedy = torch.tensor(greedy_keep_order(imp)[:keep])
        gap_sum = (shares(imp, by_sum) - dense).abs().max()
        gap_greedy = (shares(imp, greedy) - dense).abs().max()
        assert gap_greedy < gap_sum, (keep, gap_greedy, gap_sum)
    assert 4 in greedy_keep_order(imp)[:3]  # group 1's best is among the first three kept


def test_greedy_scores_rank_within_each_group_by_the_greedy_order():
    m = TwoConv()
    ex = torch.zeros(1, 1, 5, 5)
    layout = layout_of(m, ex)
    imp = torch.rand(layout.total, 2, generator=torch.Generator().manual_seed(3))
    scores = greedy_scores(layout, imp)
    for (_, n), off in zip(layout.groups, layout.offsets):
        order = greedy_keep_order(imp[off : off + n])
        assert torch.argsort(scores[off : off + n], descending=True).tolist() == order
        assert sorted(scores[off : off + n].tolist()) == pytest.approx([(k + 1) / n for k in range(n)])


# ---------------------------------------------------------------- FairPrune


def test_group_fisher_equals_half_theta_squared_times_per_sample_squared_gradients():
    m = TwoConv()
    ex = torch.zeros(1, 1, 5, 5)
    layout = layout_of(m, ex)
    batches = two_group_batches()
    sal, acc, prob = group_fisher(m, layout, batches, [0, 1], ce, None, "cpu")
    ref = copy.deepcopy(m).eval()
    names = ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias", "fc.weight"]
    params = dict(ref.named_parameters())
    fisher = [{k: torch.zeros_like(params[k], dtype=torch.float64) for k in names} for _ in range(2)]
    counts, correct = torch.zeros(2), torch.zeros(2)
    for x, y, g, _ in batches:
        for i in range(len(y)):
            logits = ref(x[i : i + 1])
            grads = torch.autograd.grad(F.cross_entropy(logits, y[i : i + 1]), [params[k] for k in names])
            for k, gr in zip(names, grads):
                fisher[int(g[i])][k] += gr.double() ** 2
            counts[int(g[i])] += 1
            correct[int(g[i])] += float(logits.argmax(1) == y[i])
    want = torch.zeros(layout.total, 2, dtype=torch.float64)
    for k in range(2):
        s = {n: 0.5 * params[n].detach().double() ** 2 * fisher[k][n] / counts[k] for n in names}
        for c in range(4):  # conv1's channel: its filter, bias, BN scale/shift, conv2's input column
            want[flat_index(layout, "bn1", c), k] = (
                s["conv1.weight"][c].sum() + s["conv1.bias"][c] + s["bn1.weight"][c] + s["bn1.bias"][c]
            ) + s["conv2.weight"][:, c].sum()
        for c in range(3):  # conv2's channel: its filter and bias, the classifier's input column
            want[flat_index(layout, "conv2", c), k] = (
                s["conv2.weight"][c].sum() + s["conv2.bias"][c] + s["fc.weight"][:, c].sum()
            )
    assert torch.allclose(sal, want, rtol=1e-6, atol=1e-12)
    assert acc == pytest.approx((correct / counts).tolist())
    assert len(prob) == 2 and all(0 < p < 1 for p in prob)


def test_group_weights_by_hand():
    assert group_weights([0.9, 0.6], [0.8, 0.5]) == (0, [0.0, 1.0])
    assert group_weights([0.6, 0.9], [0.5, 0.8]) == (1, [1.0, 0.0])
    # a tie in accuracy: the higher mean probability of the true label is privileged
    assert group_weights([0.9, 0.9], [0.7, 0.8]) == (1, [1.0, 0.0])
    # three groups: the others weighted by their accuracy gap to the best, (0.3, 0.1) / 0.4
    priv, w = group_weights([0.9, 0.6, 0.8], [0.8, 0.5, 0.7])
    assert priv == 0 and w == pytest.approx([0.0, 0.75, 0.25])
    priv, w = group_weights([0.7, 0.7, 0.7], [0.6, 0.9, 0.5])
    assert priv == 1 and w == pytest.approx([0.5, 0.0, 0.5])


def test_fairprune_scores_by_hand():
    class One:  # a layout of one group of three channels
        groups, offsets, total = [("conv", 3)], [0], 3

    sal = torch.tensor([[4.0, 1.0], [1.0, 3.0], [2.0, 2.0]])  # columns: privileged, unprivileged
    raw = fairprune_scores(One, sal, 0, [0.0, 1.0], beta=0.5, normalise=False)
    assert raw.tolist() == pytest.approx([0.5 - 4, 1.5 - 1, 1 - 2])  # beta S_u - S_p
    norm = fairprune_scores(One, sal, 0, [0.0, 1.0], beta=0.5, normalise=True)
    assert norm.tolist() == pytest.approx((raw / ((5 + 4 + 4) / 3)).tolist())
    # with the roles swapped the unprivileged column is the first
    assert fairprune_scores(One, sal, 1, [1.0, 0.0], beta=1.0, normalise=False).tolist() == pytest.approx([3, -2, 0])


class SplitConv(nn.Module):
    """Filters 0-3 read input channel 0 only, filters 4-7 input channel 1 only; group 0's samples
    carry their signal in channel 0, group 1's in channel 1, so filters 0-3 are salient for
    group 0 alone and 4-7 for group 1 alone."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 8, 3, padding=1, bias=False)
        self.fc = nn.Linear(8, 2)
        with torch.no_grad():
            self.conv.weight.abs_()  # positive filters on positive inputs: no channel is dead
            self.conv.weight[:4, 1] = 0
            self.conv.weight[4:, 0] = 0
            self.fc.weight.mul_(0.05)
            self.fc.bias.copy_(torch.tensor([1.0, 0.0]))  # predicts class 0

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def split_batches(labels_of_group):
    """Two batches; group 0 in input channel 0, group 1 in channel 1; labels per group."""
    g_ = torch.Generator().manual_seed(5)
    out = []
    for b in range(2):
        g = torch.tensor([0, 1] * 4)
        x, y = torch.zeros(8, 2, 6, 6), torch.zeros(8, dtype=torch.long)
        for k in (0, 1):
            x[g == k, k] = torch.randn(4, 6, 6, generator=g_).abs()
            y[g == k] = torch.tensor(labels_of_group[k][b * 4 : b * 4 + 4])
        out.append((x, y, g, torch.arange(b * 8, b * 8 + 8)))
    return out


def removed(dense, pruned):
    before, after = dense.conv.weight.detach(), pruned.conv.weight.detach()
    kept = {i for row in after for i in range(len(before)) if torch.equal(before[i], row)}
    return set(range(len(before))) - kept


EX2 = torch.zeros(1, 2, 6, 6)
# the model predicts class 0 everywhere: all-0 labels make a group's accuracy 1, half-1 labels 0.5
ALL0, HALF = [0] * 8, [0, 1] * 4


@pytest.mark.parametrize("labels, privileged, goes", [((ALL0, HALF), 0, {0, 1, 2, 3}), ((HALF, ALL0), 1, {4, 5, 6, 7})])
def test_fairprune_removes_the_channels_salient_only_for_the_privileged_group(labels, privileged, goes):
    dense = SplitConv()
    batches = split_batches(labels)
    layout = layout_of(dense, EX2)
    sal, acc, _ = group_fisher(dense, layout, batches, [0, 1], ce, None, "cpu")
    assert acc[privileged] == 1.0 and acc[1 - privileged] == 0.5
    assert (sal[sorted(goes), 1 - privileged] == 0).all() and (sal[sorted(goes), privileged] > 0).all()
    pruned = copy.deepcopy(dense)
    result = prune_to_target(
        pruned, "fairprune", 0.5, EX2, loader=batches, loss_fn=ce, batches=2, tolerance=0.05, **quiet
    )
    assert removed(dense, result.model) == goes and result.within_tolerance


# ---------------------------------------------------------------- pruning to the MAC target


def fair_data(n=48, bs=12, size=8, seed=2):
    g_ = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g_)
    y = (x[:, 0, :, : size // 2].mean((1, 2)) > 0).long()
    g = (torch.arange(n) % 4 == 0).long()  # a minority group, a quarter of the samples
    return [(x[i : i + bs], y[i : i + bs], g[i : i + bs], torch.arange(i, i + bs)) for i in range(0, n, bs)]


@pytest.mark.parametrize("method, options", [("fairgrape", {"batches": 3}), ("fairprune", {"batches": 2, "beta": 0.5})])
def test_each_fair_method_prunes_to_the_mac_target(method, options):
    ex = torch.zeros(1, 1, 8, 8)
    model = TwoConv(c1=16, c2=16)
    dense = copy.deepcopy(model)
    result = prune_to_target(model, method, 0.5, ex, loader=fair_data(), loss_fn=ce, tolerance=0.03, **options, **quiet)
    assert result.within_tolerance and abs(result.achieved_reduction - 0.5) <= 0.03, result.note
    assert result.model.conv1.out_channels < 16 and result.model.conv2.out_channels < 16
    assert result.model(ex).shape == (1, 2)
    if method == "fairgrape":
        # which channels of conv1 went: the last ones of the greedy order on the dense model's
        # per-group importance (eval mode: scoring changed no weight)
        layout = layout_of(dense, ex)
        imp = group_taylor(dense, layout, fair_data()[:3], [0, 1], ce, None, "cpu")
        i = layout.keys().index("conv1")
        (off, n) = layout.offsets[i], layout.groups[i][1]
        order = greedy_keep_order(imp[off : off + n])  # conv1's group: flat - off = its channel
        dense_rows = dense.conv1.weight.detach()
        kept = {i for row in result.model.conv1.weight.detach() for i in range(n) if torch.equal(dense_rows[i], row)}
        assert kept == set(order[: len(kept)])


# ---------------------------------------------------------------- options


def test_bad_fair_options_are_refused():
    common = dict(loader=fair_data(), loss_fn=ce, **quiet)
    ex = torch.zeros(1, 1, 8, 8)
    for method, bad, words in (
        ("fairprune", {"beta": -1}, "fairprune option beta must be a number >= 0, got -1"),
        ("fairprune", {"normalise": "yes"}, "fairprune option normalise must be true or false"),
        ("fairgrape", {"batches": 0}, "fairgrape option batches must be an integer >= 1, got 0"),
        ("fairgrape", {"beta": 1.0}, r"unknown option\(s\) \['beta'\] for pruning method 'fairgrape'"),
    ):
        with pytest.raises(ValueError, match=words):
            prune_to_target(TwoConv(c1=16, c2=16), method, 0.5, ex, **bad, **common)
    one_group = [(x, y, torch.zeros_like(g), i) for x, y, g, i in fair_data()]
    with pytest.raises(ValueError, match=r"group\(s\) \[0\] only; raise the fairprune option batches"):
        prune_to_target(TwoConv(), "fairprune", 0.5, torch.zeros(1, 1, 8, 8), loader=one_group, loss_fn=ce, **quiet)


def test_the_schema_refuses_bad_fair_options():
    schema = REPO / "workflow" / "schemas" / "params.schema.yaml"
    cfg = pc.load_yaml_strict(REPO / "params.yaml")
    prune = cfg["experiments"]["default"]["prune"]
    prune["methods"] = [*prune["methods"], "fairgrape", "fairprune"]
    prune["fairgrape"] = {"batches": 4, "steps": 2}
    prune["fairprune"] = {"batches": 2, "beta": 0.5, "normalise": False}
    pc.validate(copy.deepcopy(cfg), schema)  # the good ones pass
    for block, bad, words in (
        ("fairprune", {"beta": -1}, r"experiments.default.prune.fairprune.beta.*-1 is out of range; must be >= 0"),
        ("fairgrape", {"batches": 0}, r"experiments.default.prune.fairgrape.batches.*0 is out of range; must be >= 1"),
        (
            "fairgrape",
            {"gamma": 1},
            r"experiments.default.prune.fairgrape.*unknown key\(s\) 'gamma'; valid keys: batches",
        ),
    ):
        c = copy.deepcopy(cfg)
        c["experiments"]["default"]["prune"][block].update(bad)
        with pytest.raises(pc.ConfigError, match=words):
            pc.validate(c, schema)
