import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pwprune.loss import (
    LOSS_KINDS,
    CachedTeacher,
    FrozenTeacher,
    PerformanceWeightedLoss,
    make_loss,
    probabilities,
    teacher_outputs,
)

torch.set_num_threads(1)


class TinySplit(torch.utils.data.Dataset):
    """(x, y, g, idx) samples, like pwprune.data.SplitDataset."""

    def __init__(self, n=23, d=5, classes=3, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=gen)
        self.y = torch.randint(0, classes, (n,), generator=gen)
        self.g = torch.randint(0, 2, (n,), generator=gen)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.g[i], torch.tensor(i)


def _softmax(v):
    e = [math.exp(a) for a in v]
    return [a / sum(e) for a in e]


def _sigmoid(a):
    return 1 / (1 + math.exp(-a))


def test_multiclass_matches_hand_computation():
    logits = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    teacher = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    labels = [0, 0]
    m, gamma = 0.5, 2.0
    expected = []
    for z, t, y in zip(logits, teacher, labels):
        q, p = _softmax(z), _softmax(t)
        right = max(range(3), key=lambda j: p[j]) == y
        target = p if right else [1.0 if j == y else 0.0 for j in range(3)]
        ce = -sum(target[j] * math.log(q[j]) for j in range(3))
        w = m + (1 - m) * (1 - p[y]) ** gamma
        expected.append(w * ce)
    # sample 0: teacher right -> soft target; sample 1: teacher wrong -> one-hot
    assert _softmax(teacher[0])[0] > 0.5 and max(_softmax(teacher[1])) != _softmax(teacher[1])[0]

    loss = PerformanceWeightedLoss(min_weight=m, gamma=gamma, reduction="none")
    got = loss(torch.tensor(logits), torch.tensor(teacher), torch.tensor(labels))
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    mean = PerformanceWeightedLoss(min_weight=m, gamma=gamma)(
        torch.tensor(logits), torch.tensor(teacher), torch.tensor(labels)
    )
    # plain mean of weighted losses, not divided by the weight sum
    assert mean.item() == pytest.approx(sum(expected) / 2, rel=1e-6)


@pytest.mark.parametrize("shape", ["flat", "column"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool])
def test_binary_matches_hand_computation(shape, dtype):
    x = [0.3, -1.2, 2.0]
    t = [1.0, 0.5, -0.7]
    y = [1, 0, 0]
    m, gamma = 0.25, 3.0
    expected = []
    for xi, ti, yi in zip(x, t, y):
        p = _sigmoid(ti)
        right = (p > 0.5) == (yi == 1)
        target = p if right else float(yi)
        q = _sigmoid(xi)
        bce = -(target * math.log(q) + (1 - target) * math.log(1 - q))
        s = p * yi + (1 - p) * (1 - yi)
        expected.append((m + (1 - m) * (1 - s) ** gamma) * bce)

    logits, teacher = torch.tensor(x), torch.tensor(t)
    if shape == "column":
        logits, teacher = logits[:, None], teacher[:, None]
    loss = PerformanceWeightedLoss(min_weight=m, gamma=gamma, reduction="none")
    got = loss(logits, teacher, torch.tensor(y).to(dtype))
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_both_switches_off_is_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    z, t = torch.randn(16, 4, generator=gen), torch.randn(16, 4, generator=gen)
    y = torch.randint(0, 4, (16,), generator=gen)
    for reduction in ("mean", "sum", "none"):
        ce = PerformanceWeightedLoss(0.3, 2.0, reweight=False, correct_targets=False, reduction=reduction)
        torch.testing.assert_close(ce(z, t, y), F.cross_entropy(z, y, reduction=reduction))
        torch.testing.assert_close(ce(z, None, y), F.cross_entropy(z, y, reduction=reduction))
    zb, tb = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    yb = torch.randint(0, 2, (16,), generator=gen).float()
    ce = make_loss("ce", 0.3, 2.0)
    torch.testing.assert_close(ce(zb, tb, yb), F.binary_cross_entropy_with_logits(zb, yb))
    torch.testing.assert_close(ce(zb[:, None], None, yb), F.binary_cross_entropy_with_logits(zb, yb))


def test_reweight_only_scales_cross_entropy():
    z = torch.tensor([[0.2, -0.4], [1.5, 0.1], [0.0, 0.0]])
    t = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    m, gamma = 0.6, 1.5
    got = PerformanceWeightedLoss(m, gamma, correct_targets=False, reduction="none")(z, t, y)
    for i in range(3):
        s = _softmax(t[i].tolist())[y[i]]
        ce = -math.log(_softmax(z[i].tolist())[y[i]])
        assert got[i].item() == pytest.approx((m + (1 - m) * (1 - s) ** gamma) * ce, rel=1e-6)


def test_correct_only_uses_soft_targets_where_teacher_is_right():
    gen = torch.Generator().manual_seed(2)
    z, t = torch.randn(32, 5, generator=gen), 3 * torch.randn(32, 5, generator=gen)
    y = torch.randint(0, 5, (32,), generator=gen)
    right = t.argmax(1) == y
    assert 0 < right.sum() < 32  # both branches exercised
    target = torch.where(right[:, None], t.softmax(1), F.one_hot(y, 5).float())
    got = PerformanceWeightedLoss(0.1, 4.0, reweight=False, reduction="none")(z, t, y)
    torch.testing.assert_close(got, F.cross_entropy(z, target, reduction="none"))
    # min_weight = 1 switches weighting off: full PW loss equals correction only
    full = PerformanceWeightedLoss(1.0, 4.0, reduction="none")(z, t, y)
    torch.testing.assert_close(full, got)
    # and with only weighting on, a wrong teacher's sample keeps its hard-label CE times w
    weight_only = make_loss("pw_weight", 0.1, 4.0, reduction="none")(z, t, y)
    s = t.softmax(1)[torch.arange(32), y]
    torch.testing.assert_close(weight_only, (0.1 + 0.9 * (1 - s) ** 4) * F.cross_entropy(z, y, reduction="none"))


def test_reductions():
    gen = torch.Generator().manual_seed(3)
    z, t, y = (
        torch.randn(8, 3, generator=gen),
        torch.randn(8, 3, generator=gen),
        torch.randint(0, 3, (8,), generator=gen),
    )
    none = PerformanceWeightedLoss(reduction="none")(z, t, y)
    assert none.shape == (8,)
    torch.testing.assert_close(PerformanceWeightedLoss(reduction="sum")(z, t, y), none.sum())
    torch.testing.assert_close(PerformanceWeightedLoss(reduction="mean")(z, t, y), none.mean())


def test_no_gradient_reaches_teacher():
    z = torch.randn(6, 3, requires_grad=True)
    t = torch.randn(6, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    PerformanceWeightedLoss(0.5, 2.0)(z, t, y).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert t.grad is None
    zb, tb = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    PerformanceWeightedLoss(0.5, 2.0)(zb, tb, torch.tensor([0.0, 1.0, 1.0, 0.0])).backward()
    assert zb.grad is not None and tb.grad is None


Z, T, Y = torch.zeros(4, 3), torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_weight": -0.1}, "min_weight"),
        ({"min_weight": 1.5}, "min_weight"),
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"reduction": "average"}, "reduction"),
    ],
)
def test_bad_constructor_args_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerformanceWeightedLoss(**kwargs)


@pytest.mark.parametrize(
    "args, match",
    [
        ((Z, torch.zeros(4, 2), Y), "teacher_logits"),  # shape mismatch with logits
        ((Z, torch.zeros(3, 3), Y), "teacher_logits"),
        ((Z, T, torch.tensor([0, 1, 2])), "targets"),  # wrong length
        ((Z, T, Y.float()), "targets"),  # float labels for multi-class
        ((Z, T, torch.tensor([0, 1, 3, 0])), "targets"),  # label out of range
        ((Z, T, torch.tensor([0, -1, 2, 0])), "targets"),
        ((Z, torch.tensor([[0.0, float("nan"), 0]] * 4), Y), "teacher_logits"),
        ((Z, torch.full((4, 3), float("inf")), Y), "teacher_logits"),
        ((Z, None, Y), "teacher_logits"),  # teacher needed but missing
        ((torch.zeros(4), torch.zeros(4), torch.tensor([0.0, 1.0, 0.5, 1.0])), "targets"),  # binary not 0/1
        ((torch.zeros(4), torch.zeros(4), torch.tensor([0, 1, 2, 1])), "targets"),
        ((torch.zeros(4), torch.zeros(5), torch.tensor([0, 1, 0, 1])), "teacher_logits"),
        ((torch.zeros(4, 3, 2), T, Y), "logits"),
        ((Y, T, Y), "logits"),  # integer logits
    ],
)
def test_bad_call_args_name_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        PerformanceWeightedLoss()(*args)


def test_make_loss_kinds():
    switches = {k: (make_loss(k, 0.4, 1.0).reweight, make_loss(k, 0.4, 1.0).correct_targets) for k in LOSS_KINDS}
    assert switches == {
        "ce": (False, False),
        "pw": (True, True),
        "pw_weight": (True, False),
        "pw_correct": (False, True),
    }
    loss = make_loss("pw", 0.4, 1.0, reduction="sum")
    assert (loss.min_weight, loss.gamma, loss.reduction) == (0.4, 1.0, "sum")
    with pytest.raises(ValueError, match="kind"):
        make_loss("focal", 0.4, 1.0)
    default = make_loss("pw")  # same defaults as the module
    assert (default.min_weight, default.gamma) == (0.75, 5.0)


def test_probabilities():
    p = probabilities(torch.tensor([0.0, math.log(3.0)]))
    torch.testing.assert_close(p, torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    torch.testing.assert_close(probabilities(torch.tensor([[0.0], [math.log(3.0)]])), p)
    torch.testing.assert_close(
        probabilities(torch.tensor([[0.0, math.log(3.0), 0.0]])), torch.tensor([[0.2, 0.6, 0.2]])
    )


def _model():
    torch.manual_seed(0)
    # BatchNorm and Dropout make train/eval mode visible in the outputs
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def test_teacher_outputs_index_order_with_shuffled_loader():
    data = TinySplit()
    model = _model().train()
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert next(iter(loader))[3].tolist() != [0, 1, 2, 3]  # really shuffled
    out = teacher_outputs(model, loader)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, model(data.x))
    assert not out.requires_grad
    # eval mode also restored when the model started in eval mode
    teacher_outputs(model, loader)
    assert not model.training


def test_teacher_outputs_refuses_incomplete_coverage():
    loader = torch.utils.data.DataLoader(TinySplit(), batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match="loader"):
        teacher_outputs(_model(), loader)


def test_cached_and_frozen_teacher_agree():
    data = TinySplit()
    model = _model().train()
    loader = torch.utils.data.DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(1))
    cached = CachedTeacher(teacher_outputs(model, loader))
    frozen = FrozenTeacher(model)
    assert all(not p.requires_grad for p in frozen.model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the original is untouched
    for x, _, _, idx in loader:
        torch.testing.assert_close(cached(x, idx), frozen(x, idx))
        assert not frozen(x, idx).requires_grad
    # a deep copy: training the original later does not change the frozen teacher
    with torch.no_grad():
        model[0].weight.add_(1.0)
    x, _, _, idx = next(iter(loader))
    torch.testing.assert_close(cached(x, idx), frozen(x, idx))
