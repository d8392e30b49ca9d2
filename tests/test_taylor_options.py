"""Taylor's options that follow the authors' code or pwprune's own choice (issue 19, items 1 and 4).

site:            where activation x gradient is measured: "norm" (the BN output) or "conv" (the conv
                 output before BN, the authors' hooks, pruner.py:313-324, 398-399)
normalise:       the geometric schedule divides each group's scores by their mean; the authors'
                 schedule never does (pruner.py:333-335)
restore_weights: never | always | authors (the PW arm only, scripts/prune.py:226): the pruned model
                 gets the dense model's weights of the kept channels

The model is two conv + BN layers feeding a classifier, so the two measurement points give
different numbers and there are two groups for the normalisation to matter; every expected value
is computed by hand with autograd on a copy of the model, without pwprune's hooks.
"""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pwprune.loss import FrozenTeacher, make_loss
from pwprune.pruning import prune_to_target
from pwprune.pruning import target as target_module
from pwprune.pruning.graph import Layout, build_graph
from pwprune.pruning.importance import ChannelHooks, normalise_in_groups, taylor_sites
from pwprune.pruning.trajectory import seeded_batches, taylor_trajectory
from pwprune.train import make_loader

C, SIZE, CLASSES = 8, 6, 3
EX = torch.zeros(1, 3, SIZE, SIZE)
quiet = dict(log=lambda *a: None)


class TwoConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, C, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(C)
        self.conv2 = nn.Conv2d(C, C, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(C)
        self.fc = nn.Linear(C, CLASSES)

    def forward(self, x, keep=None):
        a1 = self.conv1(x)
        b1 = self.bn1(a1)
        a2 = self.conv2(F.relu(b1))
        b2 = self.bn2(a2)
        out = self.fc(F.relu(b2).mean((2, 3)))
        if keep is not None:
            keep.update(conv1=a1, bn1=b1, conv2=a2, bn2=b2)
        return out


def model(seed=0):
    """Random weights and BN affine/statistics far from the identity, so BN changes the scores."""
    torch.manual_seed(seed)
    m = TwoConvBN()
    with torch.no_grad():
        for bn in (m.bn1, m.bn2):
            bn.weight.uniform_(0.2, 3.0)
            bn.bias.uniform_(-1.0, 1.0)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.3, 2.0)
    return m


def batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return x, y, torch.zeros(n, dtype=torch.long), torch.arange(n)


def ce(logits, teacher_logits, targets):
    return F.cross_entropy(logits, targets)


def by_hand(m, b, site, train):
    """Flat scores (the groups in the layout's order, conv2's 8 channels before conv1's): per
    sample |sum over positions of a x dL/da| at the conv output (site "conv") or the BN output
    ("norm"), mean over samples."""
    order = [key for key, _ in Layout(m, build_graph(m, EX), EX).groups]
    m = copy.deepcopy(m).train(train)
    keep = {}
    x, y, _, _ = b
    loss = F.cross_entropy(m(x, keep), y)
    names = [key if site == "conv" else key.replace("conv", "bn") for key in order]
    acts = [keep[n] for n in names]
    grads = torch.autograd.grad(loss, acts)
    return torch.cat([(a * g).sum((2, 3)).abs().mean(0) for a, g in zip(acts, grads)]).detach()


def test_two_groups_in_flat_order():
    m = model()
    layout = Layout(m, build_graph(m, EX), EX)
    assert sorted(layout.groups) == [("conv1", C), ("conv2", C)]
    assert sorted(layout.sites) == ["bn1", "bn2"]
    assert sorted(taylor_sites(layout, m, "conv")) == ["conv1", "conv2"]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("site", ["norm", "conv"])
def test_probe_at_the_configured_site_equals_activation_times_gradient(site, train):
    m, b = model(), batch()
    layout = Layout(m, build_graph(m, EX), EX)
    m.train(train)
    hooks = ChannelHooks(m, layout, "probe", probe_sites=taylor_sites(layout, m, site))
    try:
        ce(m(b[0]), None, b[1]).backward()
        summed, n = hooks.taylor_batch()
    finally:
        hooks.remove()
    assert torch.allclose(summed / n, by_hand(m, b, site, train), rtol=1e-4, atol=1e-7)


def test_the_two_sites_rank_channels_differently():
    """Otherwise the site tests could not tell them apart."""
    m, b = model(), batch()
    conv, norm = by_hand(m, b, "conv", True), by_hand(m, b, "norm", True)
    assert not torch.equal(torch.argsort(conv), torch.argsort(norm))


def captured_scores(monkeypatch, **options):
    """The scores the geometric schedule hands to choose_plan (one round, one batch, no update)."""
    seen = []
    original = target_module.choose_plan

    def spy(model, layout, scores, *a, **kw):
        seen.append(scores.clone())
        return original(model, layout, scores, *a, **kw)

    monkeypatch.setattr(target_module, "choose_plan", spy)
    m = model()
    prune_to_target(
        copy.deepcopy(m),
        "taylor",
        0.3,
        EX,
        loader=[batch()],
        loss_fn=ce,
        tolerance=0.05,
        steps=1,
        batches_per_step=1,
        lr=0.0,
        **options,
        **quiet,
    )
    assert len(seen) == 1
    return m, seen[0]


@pytest.mark.parametrize("site", ["norm", "conv"])
def test_geometric_unnormalised_score_is_the_hand_computed_one(monkeypatch, site):
    m, scores = captured_scores(monkeypatch, site=site, normalise=False)
    assert torch.allclose(scores, by_hand(m, batch(), site, train=True), rtol=1e-4, atol=1e-7)


def test_geometric_normalises_per_group_by_default(monkeypatch):
    m, scores = captured_scores(monkeypatch, site="conv")
    layout = Layout(m, build_graph(m, EX), EX)
    expected = normalise_in_groups(layout, by_hand(m, batch(), "conv", train=True))
    assert torch.allclose(scores, expected, rtol=1e-4, atol=1e-7)
    raw = by_hand(m, batch(), "conv", train=True)
    assert not torch.allclose(scores, raw, rtol=1e-2)  # the normalisation did something


# ---------------------------------------------------------------- the authors' trajectory


class Split:
    def __init__(self, x, y, g):
        self.x, self.y, self.g = x, y, g


def dataset(n=48):
    from pwprune.data.dataset import SplitDataset

    rng = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=rng, dtype=torch.uint8).numpy()
    y = torch.randint(0, CLASSES, (n,), generator=rng).numpy()
    g = torch.zeros(n, dtype=torch.long).numpy()
    return SplitDataset(Split(x, y, g), {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": SIZE})


@pytest.mark.parametrize("site", ["norm", "conv"])
def test_authors_step_removes_the_lowest_unnormalised_scores_at_the_site(site):
    """B plain SGD steps, then |sum a x g| on the B-th batch in eval mode at the site, ranked
    globally without normalisation: the P lowest go (the masks, at the BN outputs, are all ones
    before the first step, so the hand computation needs none)."""
    m, ds = model(), dataset()
    B, P, lr = 3, 3, 0.05
    hand = copy.deepcopy(m)
    opt = torch.optim.SGD(hand.parameters(), lr=lr)
    stream = seeded_batches(ds, 8, 0)
    for _ in range(B):
        _, b = next(stream)
        hand.train()
        opt.zero_grad()
        F.cross_entropy(hand(b[0]), b[1]).backward()
        opt.step()
    scores = by_hand(hand, b, site, train=False)
    expected = set(torch.argsort(scores)[:P].tolist())
    other = by_hand(hand, b, "conv" if site == "norm" else "norm", train=False)
    assert expected != set(torch.argsort(other)[:P].tolist())  # the site decides

    opts = {
        "batches_per_step": B,
        "prunes_per_step": P,
        "lr": lr,
        "momentum": 0.0,
        "min_channels": 1,
        "site": site,
        "normalise": False,
    }
    snap = taylor_trajectory(copy.deepcopy(m), [1e-6], EX, dataset=ds, batch_size=8, loss_fn=ce, opts=opts, **quiet)[0]
    assert set(torch.nonzero(snap["removed"]).flatten().tolist()) == expected


def test_authors_schedule_never_normalises():
    common = dict(loader=make_loader(dataset(), batch_size=8, shuffle=True, seed=0), loss_fn=ce, **quiet)
    with pytest.raises(ValueError, match="normalise: true does not apply to schedule 'authors'"):
        prune_to_target(model(), "taylor", 0.3, EX, schedule="authors", normalise=True, **common)
    with pytest.raises(ValueError, match="normalise must be false"):
        taylor_trajectory(
            model(),
            [0.3],
            EX,
            dataset=dataset(),
            batch_size=8,
            loss_fn=ce,
            opts={
                "batches_per_step": 1,
                "prunes_per_step": 1,
                "lr": 0.0,
                "momentum": 0.0,
                "min_channels": 1,
                "normalise": True,
            },
            **quiet,
        )
    opts = target_module._resolve_options("taylor", {"schedule": "authors"})
    assert opts["normalise"] is False and opts["site"] == "norm" and opts["restore_weights"] == "never"
    assert target_module._resolve_options("taylor", {})["normalise"] is True  # geometric's default


def test_bad_taylor_options_are_refused():
    common = dict(loader=[batch()], loss_fn=ce, **quiet)
    for bad, words in (
        ({"site": "relu"}, "site must be one of norm, conv"),
        ({"restore_weights": "sometimes"}, "restore_weights must be one of never, always, authors"),
        ({"normalise": "yes"}, "normalise must be true or false"),
    ):
        with pytest.raises(ValueError, match=words):
            prune_to_target(model(), "taylor", 0.3, EX, **bad, **common)


# ---------------------------------------------------------------- restoring the dense weights


def assert_dense_minus_removed(dense, pruned):
    """Every tensor of `pruned` is the dense one restricted to the kept channels (found by matching
    conv1's filters, which only lose whole rows), BN statistics included."""
    d, p = dense.state_dict(), pruned.state_dict()

    def kept_rows(dw, pw):
        idx = []
        for row in pw:
            match = [i for i in range(len(dw)) if torch.equal(dw[i], row)]
            assert len(match) == 1, "a kept channel's weights are not the dense ones"
            idx.append(match[0])
        return torch.tensor(idx)

    k1 = kept_rows(d["conv1.weight"], p["conv1.weight"])
    k2 = kept_rows(d["conv2.weight"][:, k1], p["conv2.weight"])
    assert len(k1) < C or len(k2) < C  # something was removed
    for bn, k in (("bn1", k1), ("bn2", k2)):
        for t in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(p[f"{bn}.{t}"], d[f"{bn}.{t}"][k]), (bn, t)
        assert torch.equal(p[f"{bn}.num_batches_tracked"], d[f"{bn}.num_batches_tracked"])
    assert torch.equal(p["fc.weight"], d["fc.weight"][:, k2]) and torch.equal(p["fc.bias"], d["fc.bias"])


def run(schedule, restore, loss=None, teacher=None):
    dense = model()
    options = (
        {"schedule": "geometric", "steps": 2, "batches_per_step": 2}
        if schedule == "geometric"
        else {"schedule": "authors", "batches_per_step": 2, "prunes_per_step": 2, "momentum": 0.0}
    )
    loader = make_loader(dataset(), batch_size=8, shuffle=True, seed=0)
    result = prune_to_target(
        copy.deepcopy(dense),
        "taylor",
        0.4,
        EX,
        loader=loader,
        loss_fn=loss or ce,
        teacher=teacher,
        tolerance=0.1,
        lr=0.05,
        restore_weights=restore,
        **options,
        **quiet,
    )
    return dense, result


@pytest.mark.parametrize("schedule", ["geometric", "authors"])
def test_restore_gives_exactly_the_dense_weights_of_the_kept_channels(schedule):
    dense, restored = run(schedule, "always")
    assert_dense_minus_removed(dense, restored.model)
    # the same channels as without restoring: restoring changes the weights, not the choice
    _, kept = run(schedule, "never")
    assert restored.history == kept.history
    with pytest.raises(AssertionError, match="not the dense ones"):
        assert_dense_minus_removed(dense, kept.model)  # without it, the pruning phase's SGD steps stay
    # and the restored model is the replayed surgery on the dense model, tensor for tensor
    replay = copy.deepcopy(dense)
    build_graph(replay, EX).load_pruning_history(restored.history)
    for k, v in replay.state_dict().items():
        assert torch.equal(v, restored.model.state_dict()[k]), k


@pytest.mark.parametrize("schedule", ["geometric", "authors"])
def test_authors_restore_the_pw_arm_only(schedule):
    dense = model()
    teacher = FrozenTeacher(dense)
    _, pw = run(schedule, "authors", loss=make_loss("pw", min_weight=0.5, gamma=1.0), teacher=teacher)
    assert_dense_minus_removed(dense, pw.model)
    _, ce_arm = run(schedule, "authors", loss=make_loss("ce"))
    with pytest.raises(AssertionError, match="not the dense ones"):
        assert_dense_minus_removed(dense, ce_arm.model)
    # every PW variant is the authors' sw_taylor, which restores
    _, weight_only = run(schedule, "authors", loss=make_loss("pw_weight", min_weight=0.5, gamma=1.0), teacher=teacher)
    assert_dense_minus_removed(dense, weight_only.model)
    assert target_module.restores_weights({"restore_weights": "authors"}, ce) is False  # a plain callable: CE
