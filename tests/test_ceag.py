"""CEAG constrained fine-tuning (pwprune.ceag): the dual ascent against hand arithmetic, the
multipliers rising on a violated constraint and falling (projected to 0) on a satisfied one, the
Lagrangian's value and gradient, the dense baseline it measures against, fit() logging the
multipliers and violations per epoch, and bad options refused."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import pwprune.config as pc
from helpers import REPO
from pwprune import names
from pwprune.ceag import CEAGLoss, dual_ascent, excess_gaps, group_accuracy
from pwprune.loss import CachedTeacher, make_loss
from pwprune.train import fit, make_loader

torch.set_num_threads(1)


def _logits(correct, y, classes=2):
    """Two-class logits that predict y where `correct` is 1 and the other class where it is 0."""
    pred = torch.where(torch.tensor(correct, dtype=torch.bool), y, 1 - y)
    return F.one_hot(pred, classes).float() * 4.0 - 2.0


# a batch of 8: group 0 all right, group 1 half wrong; A = 6/8, A_0 = 1, A_1 = 1/2
Y = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
G = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
MODEL_RIGHT = [1, 1, 1, 1, 1, 0, 1, 0]
DENSE = F.one_hot(Y, 2).float() * 5.0  # the dense model: right everywhere (A_dense = A_dense_g = 1)


def test_dual_ascent_against_hand_arithmetic():
    lam = torch.tensor([0.5, 0.0, 0.2, 0.5], dtype=torch.float64)
    v = torch.tensor([0.1, -0.3, math.nan, -2.0], dtype=torch.float64)
    out = dual_ascent(lam, v, 0.5)
    # 0.5 + 0.5*0.1; 0 + 0.5*(-0.3) projected to 0; absent group untouched; 0.5 - 1.0 projected to 0
    assert out.tolist() == pytest.approx([0.55, 0.0, 0.2, 0.0])


def test_group_accuracy_and_excess_gap_by_hand():
    correct = torch.tensor(MODEL_RIGHT)
    acc, per_group, counts = group_accuracy(correct, G, 3)
    assert acc.item() == 0.75 and per_group[:2].tolist() == [1.0, 0.5] and math.isnan(per_group[2])
    assert counts.tolist() == [4, 4, 0]
    # psi_g = (A_dense_g - A_g) - (A_dense - A) with a dense model at 0.9 / [0.8, 1.0]
    gaps = excess_gaps(torch.tensor(0.9), torch.tensor([0.8, 1.0]), acc, per_group[:2])
    assert gaps.tolist() == pytest.approx([(0.8 - 1.0) - (0.9 - 0.75), (1.0 - 0.5) - (0.9 - 0.75)])


def test_multipliers_rise_on_the_violated_group_and_fall_to_zero_on_the_satisfied_one():
    loss = CEAGLoss(2, epsilon=0.05, dual_lr=1.0)
    loss.set_baseline(DENSE, Y, G)
    assert loss.dense_accuracy.item() == 1.0 and loss.dense_group_accuracy.tolist() == [1.0, 1.0]
    loss.multipliers.copy_(torch.tensor([0.4, 0.0]))
    logits = _logits(MODEL_RIGHT, Y)
    # psi_0 = 0 - (1 - 0.75) = -0.25, psi_1 = 0.5 - 0.25 = 0.25; minus epsilon: -0.30, +0.20
    seen = []
    for _ in range(2):
        loss(logits, None, Y, groups=G)
        loss.dual_step()
        seen.append(loss.multipliers.tolist())
    assert seen[0] == pytest.approx([0.1, 0.2])
    assert seen[1] == pytest.approx([0.0, 0.4])  # group 0 projected to 0, group 1 still rising
    record = loss.epoch_record()
    assert record["multipliers"] == pytest.approx([0.0, 0.4])
    assert record["violations"] == pytest.approx([-0.30, 0.20])
    assert loss.epoch_counts.sum().item() == 0  # reset for the next epoch


def test_the_violation_is_measured_against_the_dense_baseline():
    """With a dense model that is as wrong on group 1 as the pruned one, nothing is violated."""
    loss = CEAGLoss(2, epsilon=0.0, dual_lr=1.0)
    loss.set_baseline(_logits(MODEL_RIGHT, Y), Y, G)  # dense: A = 0.75, A_1 = 0.5
    loss(_logits(MODEL_RIGHT, Y), None, Y, groups=G)
    loss.dual_step()
    assert loss.multipliers.tolist() == [0.0, 0.0]
    assert loss.epoch_record()["violations"] == pytest.approx([0.0, 0.0])
    # without a baseline, the dense accuracies come from the batch's teacher logits
    per_batch = CEAGLoss(2, epsilon=0.0, dual_lr=1.0)
    assert per_batch.needs_teacher
    per_batch(_logits(MODEL_RIGHT, Y), DENSE, Y, groups=G)
    per_batch.dual_step()
    assert per_batch.multipliers.tolist() == pytest.approx([0.0, 0.25])
    with pytest.raises(ValueError, match="teacher_logits is None"):
        CEAGLoss(2)(_logits(MODEL_RIGHT, Y), None, Y, groups=G)


def test_lagrangian_value_and_gradient():
    """mean of the per-sample values = CE + sum_g lambda_g (L_g - L), gradient included; groups
    absent from the batch contribute nothing."""
    torch.manual_seed(0)
    logits = torch.randn(8, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    g = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])  # group 2 absent
    loss = CEAGLoss(3, reduction="none")
    loss.set_baseline(F.one_hot(y, 3).float(), y, g)
    loss.multipliers.copy_(torch.tensor([0.3, 0.7, 5.0]))
    ce = F.cross_entropy(logits, y, reduction="none")
    expected = ce.mean() + 0.3 * (ce[g == 0].mean() - ce.mean()) + 0.7 * (ce[g == 1].mean() - ce.mean())
    got = loss(logits, None, y, groups=g)
    assert got.shape == (8,)
    assert got.mean().item() == pytest.approx(expected.item(), rel=1e-6)
    (grad_got,) = torch.autograd.grad(got.mean(), logits, retain_graph=True)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    assert torch.allclose(grad_got, grad_expected, atol=1e-6)
    # zero multipliers: exactly cross-entropy (binary single-logit models too)
    plain = CEAGLoss(3)
    plain.set_baseline(F.one_hot(y, 3).float(), y, g)
    assert plain(logits, None, y, groups=g).item() == pytest.approx(ce.mean().item(), rel=1e-6)
    x1, yb = torch.randn(8, 1), (torch.arange(8) % 2).float()
    binary = CEAGLoss(3)
    binary.set_baseline(x1, yb, g)
    assert binary(x1, None, yb, groups=g).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(x1.reshape(-1), yb).item(), rel=1e-6
    )


def test_eval_mode_takes_no_dual_step():
    loss = CEAGLoss(2, epsilon=0.0, dual_lr=1.0)
    loss.set_baseline(DENSE, Y, G)
    loss.eval()
    loss(_logits(MODEL_RIGHT, Y), None, Y, groups=G)
    loss.dual_step()
    assert loss.multipliers.tolist() == [0.0, 0.0]


class Groups(torch.utils.data.Dataset):
    """(x, y, g, idx): a majority group 0 whose label is x0 > 0 and a minority group 1 whose label
    is x1 > 0; a CE-trained model learns the majority's rule first."""

    def __init__(self, n=96, minority=16, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=gen)
        self.g = (torch.arange(n) < minority).long()
        self.y = torch.where(self.g == 1, self.x[:, 1] > 0, self.x[:, 0] > 0).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.g[i], torch.tensor(i)


def _group_accuracy(model, data):
    with torch.no_grad():
        pred = model(data.x).argmax(1)
    return [(pred[data.g == k] == data.y[data.g == k]).float().mean().item() for k in (0, 1)]


def test_fit_with_ceag_raises_the_minority_multiplier_logs_it_and_narrows_its_gap():
    data = Groups()
    dense = CachedTeacher(F.one_hot(data.y, 2).float() * 5.0)  # a dense model right everywhere
    torch.manual_seed(0)
    start = nn.Sequential(nn.Linear(4, 2))

    def run(loss_fn):
        model, lines = copy.deepcopy(start), []
        history = fit(
            model,
            make_loader(data, 16, shuffle=True, seed=0),
            epochs=4,
            lr=0.05,
            weight_decay=0.0,
            loss_fn=loss_fn,
            teacher=dense,
            log=lines.append,
            context="t",
        )
        return model, history, lines

    ceag = CEAGLoss(2, epsilon=0.0, dual_lr=0.5)
    ceag.set_baseline(dense.logits, data.y, data.g)
    model_c, hist_c, lines_c = run(ceag)
    model_ce, hist_ce, _ = run(make_loss("ce"))
    assert "constraints" not in hist_ce[-1]  # the CE path's history is as before
    assert all(len(h["constraints"]["multipliers"]) == 2 for h in hist_c)
    first = hist_c[0]["constraints"]
    assert first["violations"][1] > 0 > first["violations"][0]  # the minority is the violated group
    assert hist_c[-1]["constraints"]["multipliers"][1] > 0 == hist_c[-1]["constraints"]["multipliers"][0]
    assert sum("constraints: multipliers" in line for line in lines_c) == 4
    assert ceag.multipliers.tolist() == [0.0, 0.0]  # fit works on its own copy

    def gap(model):  # excess gap of the minority against the all-right dense model
        acc = _group_accuracy(model, data)
        overall = (acc[0] * 80 + acc[1] * 16) / 96
        return (1 - acc[1]) - (1 - overall)

    assert gap(model_c) < gap(model_ce)


class KilledCEAG(CEAGLoss):
    """CEAG that stops the run (raises) at its n-th call, as a SIGKILL would."""

    calls, kill_at = 0, None  # on the class: fit deep-copies the loss

    def forward(self, *args, **kwargs):
        KilledCEAG.calls += 1
        if KilledCEAG.calls == KilledCEAG.kill_at:
            raise KeyboardInterrupt
        return super().forward(*args, **kwargs)


@pytest.mark.slow
def test_a_resumed_ceag_fit_continues_with_the_saved_multipliers(tmp_path):
    """Killed in the middle of epoch 2 and resumed with a fresh loss (multipliers 0): the saved
    multipliers and epoch counts come back, so weights and history equal an uninterrupted run."""
    from test_resume import META, Net, data

    from pwprune.data.dataset import Batches
    from pwprune.train import Resume

    split = data()
    y, g = torch.as_tensor(split.y), torch.as_tensor(split.g)
    teacher = CachedTeacher(F.one_hot(y, 2).float() * 5.0)

    def run(resume=None, kill_at=None):
        KilledCEAG.calls, KilledCEAG.kill_at = 0, kill_at
        loss = KilledCEAG(2, epsilon=0.0, dual_lr=0.5)
        loss.set_baseline(teacher.logits, y, g)
        torch.manual_seed(0)
        model = Net()
        loader = Batches(data(), META, 16, shuffle=True, seed=0, augment=False)
        history = fit(
            model,
            loader,
            epochs=2,
            lr=0.01,
            weight_decay=0.0,
            loss_fn=loss,
            teacher=teacher,
            resume=resume,
            scheduler="none",
            log=lambda *a: None,
        )
        return model.state_dict(), [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    want, want_history = run()
    assert max(want_history[-1]["constraints"]["multipliers"]) > 0
    resume = Resume(tmp_path / "model.pt.resume", "ceag", every_seconds=0.0)
    with pytest.raises(KeyboardInterrupt):
        run(resume, kill_at=9)  # 6 batches an epoch: batch 3 of epoch 2
    got, history = run(resume)
    assert history == want_history
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_finetune_stage_baseline_comes_from_the_cached_teacher_over_the_training_split():
    from pwprune.stages.finetune import make_ceag_loss

    y, g = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([0, 0, 1, 1, 1])
    train = SimpleNamespace(y=y.numpy(), g=g.numpy())
    prepared = SimpleNamespace(meta={"group_names": ["a", "b"]}, splits={"train": train})
    teacher = CachedTeacher(F.one_hot(torch.tensor([0, 1, 0, 0, 1]), 2).float())  # wrong on sample 2
    loss = make_ceag_loss(prepared, teacher, {"epsilon": 0.02, "dual_lr": 0.1})
    assert (loss.epsilon, loss.dual_lr, loss.num_groups) == (0.02, 0.1, 2)
    assert loss.dense_accuracy.item() == pytest.approx(0.8)
    assert loss.dense_group_accuracy.tolist() == pytest.approx([1.0, 2 / 3])
    with pytest.raises(ValueError, match="training split has 4 samples"):
        short = SimpleNamespace(meta=prepared.meta, splits={"train": SimpleNamespace(y=y[:4].numpy(), g=g[:4].numpy())})
        make_ceag_loss(short, teacher, None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_groups": 0}, "num_groups"),
        ({"num_groups": 2, "epsilon": -0.1}, "epsilon"),
        ({"num_groups": 2, "epsilon": 1.5}, "epsilon"),
        ({"num_groups": 2, "epsilon": "0.1"}, "epsilon"),
        ({"num_groups": 2, "dual_lr": 0.0}, "dual_lr"),
        ({"num_groups": 2, "dual_lr": math.nan}, "dual_lr"),
        ({"num_groups": 2, "reduction": "max"}, "reduction"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CEAGLoss(**kwargs)


def test_bad_groups_are_refused():
    loss = CEAGLoss(2)
    loss.set_baseline(DENSE, Y, G)
    with pytest.raises(ValueError, match="groups=g"):
        loss(DENSE, None, Y)
    with pytest.raises(ValueError, match=r"groups: labels must be in \[0, 2\)"):
        loss(DENSE, None, Y, groups=G + 1)


def test_config_schema_and_labels():
    schema = REPO / "workflow" / "schemas" / "params.schema.yaml"
    cfg = pc.load_yaml_strict(REPO / "params.yaml")
    # the default run lists no ceag job (only the `baselines` comparison does); an experiment may
    # list it, with its settings checked
    assert [n for n, e in cfg["experiments"].items() if "ceag" in e.get("losses", ())] == ["baselines"]
    assert "ceag" not in cfg["experiments"]["default"]["losses"]
    assert pc.phase_losses("ceag", "taylor") == ("ce", "ceag")
    assert pc.phase_losses("ceag", "random") == ("none", "ceag")
    assert "ceag" in names.FINETUNE_LOSSES and "ceag" not in names.PRUNE_LOSSES
    assert "ceag" not in names.ABLATION_LABELS
    default = cfg["experiments"]["default"]
    assert pc.ceag_settings(default) == {"epsilon": names.CEAG_EPSILON, "dual_lr": names.CEAG_DUAL_LR}
    good = copy.deepcopy(cfg)
    good["experiments"]["default"].update(losses=["ce", "pw", "ceag"], ceag={"epsilon": 0.05})
    pc.validate(good, schema)
    assert pc.ceag_settings(good["experiments"]["default"]) == {"epsilon": 0.05, "dual_lr": names.CEAG_DUAL_LR}
    for bad, key in (({"epsilon": -1}, "ceag.epsilon"), ({"dual_lr": 0}, "ceag.dual_lr"), ({"tol": 1}, "ceag")):
        broken = copy.deepcopy(cfg)
        broken["experiments"]["default"]["ceag"] = bad
        with pytest.raises(pc.ConfigError, match=rf"experiments\.default\.{key}"):
            pc.validate(broken, schema)
