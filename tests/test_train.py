import copy
import math

import pytest
import torch
import torch.nn as nn

from pwprune.loss import CachedTeacher, FrozenTeacher, PerformanceWeightedLoss, make_loss, teacher_outputs
from pwprune.train import DivergenceError, fit, loss_shares, make_loader, resolve_device, seed_everything

torch.set_num_threads(1)


class TinySplit(torch.utils.data.Dataset):
    """(x, y, g, idx) samples, like pwprune.data.SplitDataset: 2 groups, labels learnable from x."""

    def __init__(self, n=48, d=6, classes=3, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=gen)
        self.y = self.x[:, :classes].argmax(1) if classes > 2 else (self.x[:, 0] > 0).long()
        self.g = torch.randint(0, 2, (n,), generator=gen)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.g[i], torch.tensor(i)


def _model(out=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, out))


def _fit(model, data, **kw):
    args = dict(epochs=3, lr=1e-2, weight_decay=1e-4, loss_fn=make_loss("ce", 0.5, 1.0), log=lambda *a: None)
    args.update(kw)
    return fit(model, make_loader(data, 8, shuffle=True, seed=0), **args)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda:0"):
            resolve_device("cuda:0")


def test_make_loader_is_seeded_and_shuffles():
    data = TinySplit()

    def order(seed):
        return torch.cat([b[3] for b in make_loader(data, 8, True, seed)]).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == list(range(len(data)))
    assert torch.cat([b[3] for b in make_loader(data, 8, False, 0)]).tolist() == list(range(len(data)))
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(data, 0, True, 0)


def test_fit_learns_and_reports_every_epoch():
    data = TinySplit()
    lines = []
    history = _fit(_model(), data, epochs=4, log=lines.append, context="unit")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(0 <= h["accuracy"] <= 1 and h["seconds"] >= 0 and not h["diverged"] for h in history)
    # cosine schedule, stepped per epoch: lr(e) = lr/2 * (1 + cos(pi * (e-1) / epochs))
    assert [h["lr"] for h in history] == pytest.approx([1e-2 / 2 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    assert len(lines) == 4 and "unit" in lines[0] and "epoch 1/4" in lines[0] and "lr" in lines[0]
    for h in history:
        assert sum(s["share"] for s in h["loss_shares"]) == pytest.approx(1.0)
        assert {(s["label"], s["group"]) for s in h["loss_shares"]} == set(zip(data.y.tolist(), data.g.tolist()))


def test_fit_constant_lr_and_sgd():
    history = _fit(_model(), TinySplit(), optimizer="sgd", scheduler="none")
    assert [h["lr"] for h in history] == [1e-2] * 3


def test_fit_is_deterministic():
    data = TinySplit()
    weights = []
    for _ in range(2):
        seed_everything(7)  # the dropout masks come from the global RNG
        model = _model(seed=3)
        _fit(
            model,
            data,
            loss_fn=make_loss("pw", 0.5, 2.0),
            teacher=CachedTeacher(teacher_outputs(_model(seed=4), make_loader(data, 8, False, 0))),
        )
        weights.append(model.state_dict())
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_fit_with_pw_loss_and_frozen_teacher_matches_cached():
    data = TinySplit()
    dense = _model(seed=5)
    cached = CachedTeacher(teacher_outputs(dense, make_loader(data, 8, False, 0)))
    states = []
    for teacher in (cached, FrozenTeacher(dense)):
        seed_everything(1)
        model = _model(seed=6)
        _fit(model, data, loss_fn=make_loss("pw", 0.3, 1.0), teacher=teacher, epochs=2)
        states.append(model.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k])


def test_fit_trains_against_the_teachers_outputs():
    """One SGD step of fit with the PW loss equals the step taken by hand with the teacher's
    logits for exactly those samples (here arbitrary logits, far from the student's own)."""
    data = TinySplit(n=8)
    teacher_logits = 3 * torch.randn(8, 3, generator=torch.Generator().manual_seed(7))
    loss_fn = make_loss("pw", 0.3, 2.0)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    by_hand = copy.deepcopy(model)
    fit(
        model,
        make_loader(data, 8, shuffle=False, seed=0),
        epochs=1,
        lr=0.1,
        weight_decay=0.0,
        loss_fn=loss_fn,
        teacher=CachedTeacher(teacher_logits),
        optimizer="sgd",
        scheduler="none",
        log=lambda *a: None,
    )
    opt = torch.optim.SGD(by_hand.parameters(), lr=0.1, momentum=0.9)
    loss_fn(by_hand(data.x), teacher_logits, data.y).backward()
    opt.step()
    for k, v in by_hand.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_fit_binary_single_logit():
    data = TinySplit(classes=2)
    dense = _model(out=1, seed=2)
    teacher = CachedTeacher(teacher_outputs(dense, make_loader(data, 8, False, 0)))
    history = _fit(_model(out=1), data, loss_fn=make_loss("pw", 0.5, 1.0), teacher=teacher, epochs=5)
    assert history[-1]["loss"] < history[0]["loss"]
    assert {s["label"] for s in history[-1]["loss_shares"]} == {0, 1}


def test_loss_shares_hand_computed():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    labels = torch.tensor([0, 1, 0, 1])
    groups = torch.tensor([0, 0, 0, 1])
    # cells: (0,0) = 1+3 = 4, (1,0) = 2, (1,1) = 4; total 10
    assert loss_shares(losses, labels, groups) == [
        {"label": 0, "group": 0, "share": pytest.approx(0.4)},
        {"label": 1, "group": 0, "share": pytest.approx(0.2)},
        {"label": 1, "group": 1, "share": pytest.approx(0.4)},
    ]


def test_fit_loss_shares_match_hand_computation_on_tiny_case():
    # lr=0 keeps the model fixed, so the epoch's per-sample losses are known in advance
    data = TinySplit(n=10)
    model = _model()
    model[2].p = 0.0  # no dropout: the train-mode forward in fit equals this one
    with torch.no_grad():
        per = nn.functional.cross_entropy(model(data.x), data.y, reduction="none")
    cells = {}
    for l, y, g in zip(per.tolist(), data.y.tolist(), data.g.tolist()):
        cells[(y, g)] = cells.get((y, g), 0.0) + l
    total = sum(cells.values())
    history = _fit(model, data, lr=0.0, weight_decay=0.0, epochs=1)
    got = {(s["label"], s["group"]): s["share"] for s in history[0]["loss_shares"]}
    assert got == pytest.approx({k: v / total for k, v in cells.items()})
    assert history[0]["loss"] == pytest.approx(per.mean().item(), rel=1e-5)


class NaNLoss(PerformanceWeightedLoss):
    def forward(self, logits, teacher_logits, targets):
        out = super().forward(logits, teacher_logits, targets)
        return out * float("nan")


def test_divergence_raises_with_context():
    with pytest.raises(DivergenceError, match=r"resnet20/seed0: loss became nan at epoch 1"):
        _fit(_model(), TinySplit(), loss_fn=NaNLoss(reweight=False, correct_targets=False), context="resnet20/seed0")


def test_divergence_from_huge_lr_never_returns_success():
    model = _model()
    history = _fit(model, TinySplit(), lr=1e30, optimizer="sgd", scheduler="none", epochs=5, on_divergence="degenerate")
    assert history[-1]["diverged"] is True
    assert all(not h["diverged"] for h in history[:-1])
    with pytest.raises(DivergenceError, match="epoch"):
        _fit(_model(), TinySplit(), lr=1e30, optimizer="sgd", scheduler="none", epochs=5)


def test_fit_bad_options_name_the_option():
    data = TinySplit()
    for kw, match in [
        ({"optimizer": "adam"}, "optimizer"),
        ({"scheduler": "step"}, "scheduler"),
        ({"on_divergence": "ignore"}, "on_divergence"),
        ({"epochs": -1}, "epochs"),
        ({"loss_fn": lambda z, t, y: z.sum()}, "loss_fn"),
        ({"loss_fn": make_loss("pw", 0.5, 1.0)}, "teacher"),
    ]:
        with pytest.raises(ValueError, match=match):
            _fit(_model(), data, **kw)


def test_long_epochs_log_batch_progress(monkeypatch):
    # an epoch that outlasts PROGRESS_SECONDS reports which batch it is at
    import pwprune.train as train_mod

    monkeypatch.setattr(train_mod, "PROGRESS_SECONDS", 0.0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(12, 1, 2, 2)
    y = torch.randint(0, 3, (12,))
    data = [
        (x[i : i + 4], y[i : i + 4], torch.zeros(4, dtype=torch.long), torch.arange(i, i + 4)) for i in range(0, 12, 4)
    ]
    lines = []
    train_mod.fit(
        model, data, epochs=1, lr=0.01, weight_decay=0.0, loss_fn=make_loss("ce"), log=lines.append, context="ctx"
    )
    assert "ctx: epoch 1/1 batch 2/3" in lines and "ctx: epoch 1/1 batch 3/3" in lines
