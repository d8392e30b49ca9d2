"""Which channels each pruning method removes, on hand-built models where the right answer is known.

The model is one conv (8 filters over a 1-channel input) feeding the classifier through a
global average pool, so its filters form one prunable group and removing j of them removes j/8
of the MACs: a 0.5 target removes exactly 4. Which 4 went is read back from the pruned model's
weights (a kept filter's weights are unchanged by the surgery), not from the method's own
bookkeeping.
"""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pwprune.pruning import prune_to_target, scorers
from pwprune.pruning.autobot import train_gates
from pwprune.pruning.graph import Layout, build_graph
from pwprune.pruning.importance import ChannelHooks

C, SIZE, CLASSES = 8, 6, 3
EX = torch.zeros(1, 1, SIZE, SIZE)


class OneConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, C, 3, padding=1, bias=False)
        self.fc = nn.Linear(C, CLASSES)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def ce(logits, teacher_logits, targets):
    return F.cross_entropy(logits, targets)


def removed_filters(dense, pruned):
    """Indices of the dense model's channels that are no longer in the pruned model (a channel is
    its filter and the classifier weights that read it)."""

    def channels(m):
        return torch.cat([m.conv.weight.detach().flatten(1), m.fc.weight.detach().t()], 1)

    before, after = channels(dense), channels(pruned)
    kept = []
    for row in after:
        match = [i for i in range(len(before)) if torch.equal(before[i], row)]
        assert len(match) == 1, "a kept channel's weights changed or are ambiguous"
        kept.append(match[0])
    assert len(set(kept)) == len(kept)
    return set(range(len(before))) - set(kept)


def lowest(scores, k):
    order = sorted(range(len(scores)), key=lambda i: float(scores[i]))
    # a clear margin, so the expected set does not hinge on rounding
    assert float(scores[order[k]]) - float(scores[order[k - 1]]) > 1e-4 * abs(float(scores[order[k]]))
    return set(order[:k])


def prune(model, method, target=0.5, **kw):
    pruned = copy.deepcopy(model)
    result = prune_to_target(pruned, method, target, EX, log=lambda *_: None, tolerance=0.05, **kw)
    assert result.achieved_reduction == pytest.approx(target, abs=0.01)
    return removed_filters(model, result.model)


def toy_data(seed=0, n=96, bs=32):
    """Three classes, each a brightness pattern in one column band: a learnable, separable task."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = 0.3 * torch.randn(n, 1, SIZE, SIZE, generator=g)
    for c in range(CLASSES):
        x[y == c, :, :, 2 * c : 2 * c + 2] += 2.0
    return [
        (
            x[i : i + bs],
            y[i : i + bs],
            torch.zeros(len(y[i : i + bs]), dtype=torch.long),
            torch.arange(i, min(i + bs, n)),
        )
        for i in range(0, n, bs)
    ]


# ---------------------------------------------------------------- magnitude


def magnitude_model():
    """Filters 0-3 are spiky (one weight a), 4-7 spread (nine weights b): by L1 the spiky ones
    are weakest (a < 9b), by L2 the spread ones (3b < a). The classifier's weights are zero, so
    only the filters themselves count towards each channel's norm."""
    m = OneConv()
    with torch.no_grad():
        m.conv.weight.zero_()
        for i, a in enumerate([1.0, 1.1, 1.2, 1.3]):
            m.conv.weight[i, 0, 1, 1] = a
        for i, b in enumerate([0.20, 0.21, 0.22, 0.23]):
            m.conv.weight[4 + i].fill_(b)
        m.fc.weight.zero_()
    return m


@pytest.mark.parametrize("norm", [1, 2])
def test_magnitude_removes_the_smallest_norms(norm):
    m = magnitude_model()
    w = m.conv.weight.detach().flatten(1)
    norms = w.abs().pow(norm).sum(1).pow(1 / norm)
    assert prune(m, "magnitude", norm=norm) == lowest(norms, 4)


def test_l1_and_l2_choose_differently_where_they_should():
    m = magnitude_model()
    assert prune(m, "magnitude", norm=1) == {0, 1, 2, 3}  # the spiky filters: smallest sums
    assert prune(m, "magnitude", norm=2) == {4, 5, 6, 7}  # the spread filters: smallest L2


def test_magnitude_counts_the_weights_that_read_a_channel():
    """Equal filters: the channels whose classifier weights are smallest are the weakest."""
    m = OneConv()
    with torch.no_grad():
        m.conv.weight.fill_(0.1)
        m.fc.weight.copy_(torch.tensor([3.0, 0.1, 2.0, 0.2, 2.5, 0.3, 1.5, 0.4]).repeat(CLASSES, 1))
    assert prune(m, "magnitude", norm=1) == {1, 3, 5, 7}


# ---------------------------------------------------------------- Taylor


def trained_model(seed=0, steps=60):
    torch.manual_seed(seed)
    m = OneConv()
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    data = toy_data()
    for i in range(steps):
        x, y, _, _ = data[i % len(data)]
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return m


def taylor_by_hand(model, batch):
    """Per channel: |sum over positions of activation x d loss / d activation| per sample, mean
    over samples, at the conv output (the feature map the channel writes)."""
    x, y, _, _ = batch
    model = copy.deepcopy(model)
    act = model.conv(x)
    act.retain_grad()
    logits = model.fc(F.relu(act).mean((2, 3)))
    F.cross_entropy(logits, y).backward()
    return (act * act.grad).sum((2, 3)).abs().mean(0).detach()


def test_taylor_probe_equals_activation_times_gradient():
    m = trained_model()
    batch = toy_data()[0]
    layout = Layout(m, build_graph(m, EX), EX)
    assert list(layout.sites) == ["conv"]  # no norm layer: the conv output is where it measures
    hooks = ChannelHooks(m, layout, "probe")
    try:
        ce(m(batch[0]), None, batch[1]).backward()
        summed, n = hooks.taylor_batch()
    finally:
        hooks.remove()
    assert n == len(batch[0])
    assert torch.allclose(summed / n, taylor_by_hand(m, batch), rtol=1e-4, atol=1e-8)


def test_taylor_removes_the_lowest_scored_channels():
    m = trained_model()
    data = toy_data()
    # one round on one batch without weight updates: the score is exactly the hand computation
    removed = prune(m, "taylor", loader=data[:1], loss_fn=ce, steps=1, batches_per_step=1, lr=0.0)
    assert removed == lowest(taylor_by_hand(m, data[0]), 4)


# ---------------------------------------------------------------- AutoBot

DEAD = {4, 5, 6, 7}


def model_with_dead_channels():
    """Trained, then channels 4-7 cut off from the classifier: they cannot affect the loss."""
    m = trained_model()
    with torch.no_grad():
        m.fc.weight[:, sorted(DEAD)] = 0.0
    return m


def gates(m, **kw):
    layout = Layout(m, build_graph(m, EX), EX)
    opts = dict(iterations=60, lr=0.05, beta=2.0, binarization=0.1, log=lambda *_: None)
    return train_gates(copy.deepcopy(m), layout, toy_data(), ce, None, 0.5, "cpu", **{**opts, **kw})


def test_autobot_gates_move_with_the_task_loss_only_where_it_reaches():
    # no FLOP or binarisation term: only the task loss moves the gates, and it cannot reach the
    # gates of channels the classifier ignores (Adam with a zero gradient does not move)
    g = gates(model_with_dead_channels(), beta=0.0, binarization=0.0)
    start = torch.sigmoid(torch.tensor(3.0))
    assert torch.allclose(g[sorted(DEAD)], start.expand(4))
    live = sorted(set(range(C)) - DEAD)
    assert (g[live] - start).abs().min() > 1e-3


def test_autobot_gates_of_useless_channels_fall_below_useful_ones():
    g = gates(model_with_dead_channels())
    live = sorted(set(range(C)) - DEAD)
    assert g[sorted(DEAD)].max() < g[live].min()
    assert g[sorted(DEAD)].max() < torch.sigmoid(torch.tensor(3.0))  # the FLOP term pulled them down


def test_autobot_removes_the_channels_whose_gates_are_lowest(monkeypatch):
    seen = []

    def spy(*args, **kwargs):
        seen.append(train_gates(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(scorers, "train_gates", spy)
    m = model_with_dead_channels()
    removed = prune(m, "autobot", loader=toy_data(), loss_fn=ce, iterations=60, beta=2.0, binarization=0.1)
    (g,) = seen
    assert removed == lowest(g, 4)
    assert removed == DEAD  # and those are the channels the loss does not need


# ---------------------------------------------------------------- the one registry of methods


def test_every_method_is_one_scorer_with_the_uniform_signature():
    from pwprune.pruning import PRUNING_METHODS, SCORERS, ScoringData
    from pwprune.pruning.target import OPTIONS

    assert tuple(SCORERS) == PRUNING_METHODS == tuple(OPTIONS)
    m = OneConv()
    layout = Layout(m, build_graph(m, EX), EX)
    for method, fn in SCORERS.items():
        own = scorers.scorer_options(fn)  # (model, layout, data, *, option=default, ...) or TypeError
        assert own.items() <= OPTIONS[method].items()
        if method in ("random", "magnitude"):  # data-free: one score per channel of the layout
            scores = fn(m, layout, ScoringData(method, seed=0))
            assert scores.shape == (layout.total,) == (C,)
    with pytest.raises(ValueError, match="'taylor' is data-driven: pass loader and loss_fn"):
        SCORERS["taylor"](m, layout, ScoringData("taylor"))
    with pytest.raises(TypeError, match="not a scorer"):
        scorers.scorer_options(lambda model, layout, data, norm: None)  # an option without a default


def test_a_scorer_registered_in_the_table_is_a_method_pruned_by_its_scores(monkeypatch):
    """One function plus one entry in SCORERS is a whole method: its options are its keyword
    parameters, and prune_to_target removes its lowest-scored channels."""
    calls = []

    def toy_score(model, layout, data, *, order=(3, 0, 7, 5, 1, 6, 2, 4)):
        calls.append((layout.total, data.target, order))
        return torch.tensor([float(order.index(i)) for i in range(layout.total)])

    monkeypatch.setitem(scorers.SCORERS, "toy", toy_score)
    m = OneConv()
    assert prune(m, "toy") == {3, 0, 7, 5}
    assert prune(m, "toy", order=(6, 2, 4, 1, 0, 3, 5, 7)) == {6, 2, 4, 1}
    assert calls == [(C, 0.5, (3, 0, 7, 5, 1, 6, 2, 4)), (C, 0.5, (6, 2, 4, 1, 0, 3, 5, 7))]
    with pytest.raises(
        ValueError,
        match=r"unknown option\(s\) \['norm'\] for pruning method 'toy'; "
        r"valid options: \['min_channels', 'order', 'round_to'\]",
    ):
        prune(m, "toy", norm=1)
    monkeypatch.delitem(scorers.SCORERS, "toy")
    with pytest.raises(ValueError, match="unknown pruning method 'toy'"):
        prune(m, "toy")
