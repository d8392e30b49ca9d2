"""AutoBot as the authors' code ran it (issue 19): each difference is a named option of
prune.autobot, and each option does what the authors' code does when it selects their choice.

    init           gate logits start at 2.1972 (prune/pruner.py:223)
    flop_loss      asymmetric: (F - F*)/(F0 - F*) above the target, 1 - F/F* below (pruner.py:129-133)
    mode           train: BN batch statistics while the gates learn; the running statistics this
                   moves are the dense model's again afterwards (pruner.py:139; strategy.py:11, 15)
    keep           best / authors: the lowest-loss step after 60 % of the iterations (pruner.py:207-209)
    plain_targets  teacher: ce and pw_weight train the gates on the dense model's soft outputs
    search         threshold: the authors' bisection of the gate threshold (pruner.py:88-108)
    tolerance_pw   the stopping tolerance of a reweighting loss (pruner.py:59 vs 246)

Tiny models and a few iterations: the whole file runs in seconds on CPU.
"""

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pwprune.loss import make_loss
from pwprune.models import arch_dict, build_from_arch, example_input
from pwprune.pruning import autobot, prune_to_target, scorers
from pwprune.pruning.autobot import flop_term, gate_loss, threshold_search, train_gates
from pwprune.pruning.graph import Layout, build_graph
from pwprune.pruning.importance import ChannelHooks

C, SIZE, CLASSES = 8, 6, 3
EX = torch.zeros(1, 1, SIZE, SIZE)
QUIET = dict(log=lambda *_: None)


class ConvBN(nn.Module):
    """One conv + BN (8 channels over a 1-channel input) feeding the classifier through a pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, C, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(C)
        self.fc = nn.Linear(C, CLASSES)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def toy_data(n_batches=4, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        x = torch.randn(bs, 1, SIZE, SIZE, generator=g) * 2 + 1
        y = torch.randint(0, CLASSES, (bs,), generator=g)
        out.append((x, y, torch.zeros(bs, dtype=torch.long), torch.arange(b * bs, (b + 1) * bs)))
    return out


def model_and_layout(seed=0):
    torch.manual_seed(seed)
    m = ConvBN()
    with torch.no_grad():  # BN statistics that are not the defaults, so a change shows
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
    m.eval()
    return m, Layout(m, build_graph(m, EX), EX)


def ce(logits, teacher_logits, targets):
    return F.cross_entropy(logits, targets)


class RecordingHooks(ChannelHooks):
    """ChannelHooks that remember every gate vector train_gates sets (one per step, before it)."""

    seen = []

    @property
    def gates(self):
        return self._gates

    @gates.setter
    def gates(self, g):
        self._gates = g
        if g is not None:
            RecordingHooks.seen.append(g.detach().clone())


@pytest.fixture
def recorded(monkeypatch):
    RecordingHooks.seen = []
    monkeypatch.setattr(autobot, "ChannelHooks", RecordingHooks)
    return RecordingHooks.seen


# ---------------------------------------------------------------- the FLOP term


@pytest.mark.parametrize("target", [0.5, 0.9, 0.9961])
def test_asymmetric_flop_term_is_the_authors_formula_in_flop_counts(target):
    """pruner.py:129-133 in FLOPs: F0 the dense count, F* = (1 - target) F0, F the soft count."""
    F0 = 123456.0
    Ft = (1 - target) * F0
    for f in [0.0, 0.3 * Ft, Ft * 0.999, Ft * 1.001, 0.5 * (Ft + F0), F0]:
        by_hand = (f - Ft) / (F0 - Ft) if f > Ft else 1 - f / Ft
        kept = torch.tensor(f / F0, dtype=torch.float64, requires_grad=True)
        got = flop_term(kept, 1 - target, "asymmetric")
        assert float(got.detach()) == pytest.approx(by_hand, rel=1e-9, abs=1e-12)
        got.backward()  # d/dkept: 1/(1 - keep) above, -1/keep below
        slope = 1 / target if f > Ft else -1 / (1 - target)
        assert float(kept.grad) == pytest.approx(slope, rel=1e-9)
    # the two sides meet at the target (0) and are 1 at no FLOPs and at the dense count
    keep = 1 - target
    assert float(flop_term(torch.tensor(keep), keep, "asymmetric")) == pytest.approx(0, abs=1e-6)
    assert float(flop_term(torch.tensor(0.0), keep, "asymmetric")) == pytest.approx(1)
    assert float(flop_term(torch.tensor(1.0), keep, "asymmetric")) == pytest.approx(1)
    # pwprune's own: |kept - keep|
    assert float(flop_term(torch.tensor(0.0), keep, "symmetric")) == pytest.approx(keep)


def test_train_gates_uses_the_chosen_flop_term():
    """At target 0.5 the asymmetric term is exactly twice the symmetric one on both sides, so it
    trains the same gates as the symmetric term with twice the beta, and other gates than it."""
    m, layout = model_and_layout()
    run = dict(iterations=12, lr=0.3, binarization=0.0, **QUIET)
    asym = train_gates(
        copy.deepcopy(m), layout, toy_data(), ce, None, 0.5, "cpu", beta=1.5, flop_loss="asymmetric", **run
    )
    double = train_gates(
        copy.deepcopy(m), layout, toy_data(), ce, None, 0.5, "cpu", beta=3.0, flop_loss="symmetric", **run
    )
    same_beta = train_gates(
        copy.deepcopy(m), layout, toy_data(), ce, None, 0.5, "cpu", beta=1.5, flop_loss="symmetric", **run
    )
    assert torch.allclose(asym, double, atol=1e-5)
    assert not torch.allclose(asym, same_beta, atol=1e-3)


# ---------------------------------------------------------------- init


def test_init_is_the_first_gate_value(recorded):
    m, layout = model_and_layout()
    train_gates(m, layout, toy_data(), ce, None, 0.5, "cpu", iterations=2, init=2.1972, **QUIET)
    assert torch.allclose(recorded[0], torch.full((layout.total,), 0.9), atol=1e-4)  # sigmoid(2.1972)
    recorded.clear()
    train_gates(m, layout, toy_data(), ce, None, 0.5, "cpu", iterations=2, **QUIET)  # pwprune's 3.0
    assert torch.allclose(recorded[0], torch.sigmoid(torch.tensor(3.0)).expand(layout.total))


# ---------------------------------------------------------------- model mode and BN statistics


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_mode_train_moves_bn_statistics_while_gates_learn_and_they_come_back(mode):
    m, layout = model_and_layout()
    m.train()  # the caller's mode must come back too
    dense = copy.deepcopy(m.state_dict())
    seen = []
    m.bn.register_forward_pre_hook(lambda mod, inp: seen.append((mod.training, mod.running_mean.clone())))
    train_gates(m, layout, toy_data(), ce, None, 0.5, "cpu", iterations=5, mode=mode, **QUIET)
    assert [t for t, _ in seen] == [mode == "train"] * 5
    moved = [not torch.equal(rm, dense["bn.running_mean"]) for _, rm in seen[1:]]
    assert all(moved) if mode == "train" else not any(moved)
    for k, v in m.state_dict().items():  # the dense statistics (and weights) afterwards
        assert torch.equal(v, dense[k]), k
    assert m.training


def test_mode_train_prunes_a_model_with_the_dense_bn_statistics():
    """The pruned model's BN keeps the dense running statistics of its kept channels, as the
    authors' restore of the pre-pruning state dict gives it (scripts/prune.py:226)."""
    arch = arch_dict("small_cnn", 3, 1, 8)
    torch.manual_seed(0)
    dense = build_from_arch(arch)
    with torch.no_grad():
        for mod in dense.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
    model = copy.deepcopy(dense)
    result = prune_to_target(
        model,
        "autobot",
        0.5,
        example_input(arch),
        loader=toy_data(),
        loss_fn=ce,
        tolerance=0.05,
        iterations=6,
        mode="train",
        **QUIET,
    )
    before = dict(dense.named_modules())
    checked = 0
    for name, mod in result.model.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            ref = before[name]
            for buf in ("running_mean", "running_var"):
                assert torch.isin(getattr(mod, buf), getattr(ref, buf)).all(), (name, buf)
            assert int(mod.num_batches_tracked) == int(ref.num_batches_tracked)
            checked += 1
    assert checked == 4 and result.achieved_reduction > 0.4


# ---------------------------------------------------------------- which gates are kept


def scripted_loss(values):
    """A task loss whose value at step i is values[i] (plus a tiny gate-dependent part, so the
    gates move every step)."""
    calls = []

    def loss(logits, teacher_logits, targets):
        calls.append(None)
        return values[len(calls) - 1] + 1e-3 * logits.sum()

    return loss


@pytest.mark.parametrize("keep", ["last", "best", "authors"])
def test_keep_best_is_the_lowest_loss_after_60_percent_of_the_iterations(recorded, keep):
    # the lowest losses (0) are in the first 60 % of the 10 steps and do not count; among steps
    # 7-10 the lowest is step 8's
    values = [0, 0, 0, 0, 0, 0, 5, 1, 3, 4]
    m, layout = model_and_layout()
    got = train_gates(
        m,
        layout,
        toy_data(),
        scripted_loss(values),
        None,
        0.5,
        "cpu",
        iterations=10,
        lr=0.2,
        beta=0.0,
        binarization=0.0,
        keep=keep,
        best_after=0.6,
        **QUIET,
    )
    assert len(recorded) == 10
    assert all(not torch.equal(recorded[i], recorded[i + 1]) for i in range(9))  # the gates moved every step
    scored_at_step_8, after_step_8 = recorded[7], recorded[8]
    if keep == "best":
        assert torch.equal(got, scored_at_step_8)
    elif keep == "authors":  # pruner.py:203-209: loss taken before optimizer.step(), snapshot after
        assert torch.equal(got, after_step_8)
    else:
        assert not any(torch.equal(got, r) for r in recorded)  # the gates after the last step


def test_keep_best_after_zero_counts_every_step(recorded):
    values = [2, 0.5, 3, 4, 5]
    m, layout = model_and_layout()
    got = train_gates(
        m,
        layout,
        toy_data(),
        scripted_loss(values),
        None,
        0.5,
        "cpu",
        iterations=5,
        lr=0.2,
        beta=0.0,
        binarization=0.0,
        keep="best",
        best_after=0.0,
        **QUIET,
    )
    assert torch.equal(got, recorded[1])


# ---------------------------------------------------------------- the plain arm's targets


def _soft_ce_by_hand(logits, teacher_logits):
    return -(torch.softmax(teacher_logits, 1) * torch.log_softmax(logits, 1)).sum(1)


def test_plain_targets_teacher_is_cross_entropy_against_the_teachers_probabilities():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 5, generator=g, requires_grad=True)
    teacher = torch.randn(16, 5, generator=g) * 2
    y = torch.randint(0, 5, (16,), generator=g)
    teacher[0] = F.one_hot(y[0], 5).float() * -5  # a sample the teacher gets wrong: still its output
    loss = gate_loss(make_loss("ce"), "teacher", teacher=object())
    (got,) = torch.autograd.grad(loss(logits, teacher, y), logits)
    (want,) = torch.autograd.grad(_soft_ce_by_hand(logits, teacher).mean(), logits)
    assert torch.allclose(got, want, atol=1e-6)
    # and the labels do not matter any more
    assert torch.allclose(loss(logits, teacher, (y + 1) % 5), loss(logits, teacher, y))

    # pw_weight: the same soft targets, with the PW weights of the true label's probability
    pw_weight = gate_loss(make_loss("pw_weight", 0.3, 2.0), "teacher", teacher=object())
    (got,) = torch.autograd.grad(pw_weight(logits, teacher, y), logits)
    s = torch.softmax(teacher, 1).gather(1, y[:, None]).squeeze(1)
    w = 0.3 + 0.7 * (1 - s) ** 2.0
    (want,) = torch.autograd.grad((w * _soft_ce_by_hand(logits, teacher)).mean(), logits)
    assert torch.allclose(got, want, atol=1e-6)


def test_plain_targets_teacher_single_logit():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(12, generator=g, requires_grad=True)
    teacher = torch.randn(12, generator=g) * 3
    y = torch.randint(0, 2, (12,), generator=g).float()
    loss = gate_loss(make_loss("ce"), "teacher", teacher=object())
    (got,) = torch.autograd.grad(loss(logits, teacher, y), logits)
    p = torch.sigmoid(teacher)
    by_hand = -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits)).mean()
    (want,) = torch.autograd.grad(by_hand, logits)
    assert torch.allclose(got, want, atol=1e-6)


def test_plain_targets_leave_correcting_losses_and_labels_alone():
    teacher = object()
    for kind in ("pw", "pw_correct"):
        loss = make_loss(kind)
        assert gate_loss(loss, "teacher", teacher) is loss  # the authors' fix_labels runs
    ce_loss = make_loss("ce")
    assert gate_loss(ce_loss, "labels", teacher) is ce_loss
    assert not ce_loss.soft_targets  # the caller's loss is not changed
    with pytest.raises(ValueError, match="teacher="):
        gate_loss(ce_loss, "teacher", None)
    with pytest.raises(ValueError, match="PerformanceWeightedLoss"):
        gate_loss(ce, "teacher", teacher)


def test_prune_to_target_trains_the_gates_on_the_teacher_for_plain_targets_teacher(monkeypatch):
    losses = []

    def spy(model, layout, loader, loss_fn, *args, **kwargs):
        losses.append(loss_fn)
        return train_gates(model, layout, loader, loss_fn, *args, **kwargs)

    monkeypatch.setattr(scorers, "train_gates", spy)
    teacher_logits = torch.randn(32, CLASSES)
    teacher = lambda x, idx: teacher_logits[idx]  # noqa: E731
    for plain_targets in ("labels", "teacher"):
        m, _ = model_and_layout()
        prune_to_target(
            m,
            "autobot",
            0.5,
            EX,
            loader=toy_data(),
            loss_fn=make_loss("ce"),
            teacher=teacher,
            tolerance=0.1,
            iterations=3,
            plain_targets=plain_targets,
            **QUIET,
        )
    assert [lf.soft_targets for lf in losses] == [False, True]


# ---------------------------------------------------------------- the threshold search and its tolerance


class LinearLayout:
    """A stand-in layout: 8 channels, each 1/8 of the MACs."""

    total = 8
    macs = 8.0

    def estimate_macs(self, keep):
        return keep.sum()


def test_threshold_search_stops_at_the_first_threshold_within_tolerance():
    gates = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.45, 0.6, 0.7, 0.8])
    cand = torch.arange(7)  # the best channel is never a candidate
    # tight: 0.5 removes 5 (0.625), 0.25 removes 2 (0.25), 0.375 -> 3, 0.4375 -> 4 (0.5): stop
    k, threshold = threshold_search(LinearLayout(), gates, cand, 0.5, 8.0, 0.01, **QUIET)
    assert (k, threshold) == (4, 0.4375)
    # loose: 0.5 already removes 0.625, within 0.2 of the target: the authors stop there,
    # though 4 channels would be nearer
    k, threshold = threshold_search(LinearLayout(), gates, cand, 0.5, 8.0, 0.2, **QUIET)
    assert (k, threshold) == (5, 0.5)


def test_tolerance_pw_is_the_tolerance_of_reweighting_losses_only():
    teacher_logits = torch.randn(32, CLASSES)
    teacher = lambda x, idx: teacher_logits[idx]  # noqa: E731
    found = {}
    for kind in ("ce", "pw_correct", "pw_weight", "pw"):
        logs = []
        m, _ = model_and_layout()
        result = prune_to_target(
            m,
            "autobot",
            0.5,
            EX,
            loader=toy_data(),
            loss_fn=make_loss(kind),
            teacher=teacher,
            tolerance=0.001,
            iterations=3,
            search="threshold",
            tolerance_pw=0.15,
            log=logs.append,
        )
        found[kind] = [t for t in (0.001, 0.15) if any(f"tolerance {t})" in line for line in logs)]
        assert result.within_tolerance == (abs(result.achieved_reduction - 0.5) <= found[kind][0])
    assert found == {"ce": [0.001], "pw_correct": [0.001], "pw_weight": [0.15], "pw": [0.15]}


def test_threshold_search_prunes_the_channels_below_the_threshold(monkeypatch):
    fixed = torch.tensor([0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.95, 0.4])
    monkeypatch.setattr(scorers, "train_gates", lambda *a, **k: fixed.clone())
    m, _ = model_and_layout()
    dense = copy.deepcopy(m)
    result = prune_to_target(
        m, "autobot", 0.5, EX, loader=toy_data(), loss_fn=ce, tolerance=0.2, search="threshold", **QUIET
    )
    kept = [i for i in range(C) if any(torch.equal(dense.conv.weight[i], w) for w in result.model.conv.weight)]
    # threshold 0.5 is within 0.2 of the target: every gate <= 0.5 goes
    assert kept == [0, 2, 4, 6]


# ---------------------------------------------------------------- the options themselves


@pytest.mark.parametrize(
    "bad",
    [
        {"flop_loss": "abs"},
        {"mode": "training"},
        {"keep": "first"},
        {"plain_targets": "soft"},
        {"search": "bisect"},
        {"best_after": 1.0},
        {"best_after": -0.1},
        {"init": math.nan},
        {"init": "2"},
        {"tolerance_pw": 0},
        {"tolerance_pw": 0.5},
    ],
)
def test_bad_options_are_refused_by_name(bad):
    m, _ = model_and_layout()
    with pytest.raises(ValueError, match=f"autobot option {next(iter(bad))}"):
        prune_to_target(m, "autobot", 0.5, EX, loader=toy_data(), loss_fn=ce, **bad, **QUIET)


def test_options_are_autobots_only():
    m, _ = model_and_layout()
    with pytest.raises(ValueError, match="unknown option"):
        prune_to_target(m, "magnitude", 0.5, EX, keep="best", **QUIET)
