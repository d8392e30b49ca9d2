"""What is pruned and counted (issue 19, items 5 and 6).

prune.layers = conv, the authors' scope: only conv-rooted groups are pruned (no Linear loses output
units) and a target counts the MACs of the full convolutions only (prune/utils.py:148-156, 270).
resnet20_a / resnet56_a: the CIFAR ResNets with He et al.'s zero-padded identity shortcuts (option A,
the authors' models/resnet.py), whose residual stream stays whole while the blocks' inner channels are
pruned to a target; the pruned checkpoint reloads."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pwprune.checkpoint import load_checkpoint, save_checkpoint
from pwprune.data.dataset import SplitDataset
from pwprune.models import PadShortcut, arch_dict, build_from_arch, build_model, example_input, fixed_layers
from pwprune.pruning import prune_to_target
from pwprune.pruning.graph import Layout, build_graph, conv_macs, counted_macs


def quiet(*_):
    pass


def ce(logits, teacher_logits, targets):
    return F.cross_entropy(logits, targets)


class _Split:
    def __init__(self, x, y, g):
        self.x, self.y, self.g = x, y, g


def dataset(n=32, size=8, classes=10, seed=0):
    rng = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), generator=rng, dtype=torch.uint8).numpy()
    y = torch.randint(0, classes, (n,), generator=rng).numpy()
    g = torch.randint(0, 2, (n,), generator=rng).numpy()
    return SplitDataset(_Split(x, y, g), {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": size})


def loader(ds, batch_size=8):
    from pwprune.train import make_loader

    return make_loader(ds, batch_size, shuffle=True, seed=0)


def hand_conv_macs(model, x):
    """in x out x kernel x output positions of every groups == 1 conv, from the shapes alone."""
    sizes = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape[-2] * o.shape[-1]))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return sum(
        m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * hw
        for m, hw in sizes.items()
        if m.groups == 1
    )


# ---------------------------------------------------------------- item 5: prune.layers


class HiddenFC(nn.Module):
    """conv -> depthwise conv -> 1x1 conv -> hidden Linear -> classifier: every kind of layer the
    scope treats differently, small enough to count by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 16, 1, bias=False)
        self.hidden = nn.Linear(16, 32)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.relu(self.pw(self.dw(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(F.relu(self.hidden(x)))


def test_conv_count_is_the_full_convolutions_by_hand():
    m, x = HiddenFC(), torch.zeros(1, 3, 8, 8)
    by_hand = 3 * 8 * 9 * 64 + 8 * 16 * 1 * 64  # conv + pointwise; depthwise and Linears not counted
    assert counted_macs(m, x, "conv") == by_hand == sum(conv_macs(m, x).values())
    assert counted_macs(m, x, "all") > by_hand  # every layer: depthwise, Linears, BN...
    layout = Layout(m, build_graph(m, x), x, layers="conv")
    assert layout.macs == by_hand
    assert float(layout.estimate_macs(torch.ones(layout.total))) == pytest.approx(by_hand)
    # no Linear roots a group: the hidden Linear keeps its 32 units; the pointwise conv's group
    # still reaches the hidden Linear's input columns
    assert "hidden" not in layout.keys() and "fc" not in layout.keys()
    assert {("conv", "out"), ("pw", "out"), ("hidden", "in")} <= set(layout.axes)
    assert ("hidden", "out") not in layout.axes
    assert "hidden" in Layout(m, build_graph(m, x), x, layers="all").keys()


def test_conv_scope_prunes_to_target_in_the_conv_count_and_keeps_linear_units():
    torch.manual_seed(0)
    m, x = HiddenFC(), torch.zeros(1, 3, 8, 8)
    r = prune_to_target(m, "magnitude", 0.6, x, layers="conv", tolerance=0.02, log=quiet)
    assert r.counted_layers == "conv" and r.within_tolerance, r.note
    assert r.macs_before == 3 * 8 * 9 * 64 + 8 * 16 * 64
    assert r.macs_after == hand_conv_macs(r.model, x)
    assert r.achieved_reduction == pytest.approx(1 - r.macs_after / r.macs_before)
    assert r.model.hidden.out_features == 32 and r.model.fc.out_features == 4
    assert r.model.hidden.in_features == r.model.pw.out_channels < 16  # columns go with pruned channels
    assert r.total_macs_before > r.macs_before and r.total_macs_after > r.macs_after


def test_unknown_layers_scope_is_refused():
    m, x = HiddenFC(), torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="layers must be one of all, conv"):
        prune_to_target(m, "random", 0.5, x, layers="linear", log=quiet)


@pytest.mark.slow
def test_vgg16_conv_scope_leaves_hidden_fc_units_whole_and_uncounted():
    """At 99 % of the conv MACs VGG-16's fc6/fc7 (4096 units each) are untouched and not counted;
    the last conv's pruned channels take fc6's input columns with them (49 per channel at 32 px)."""
    torch.manual_seed(0)
    arch = arch_dict("vgg16", 2, 3, 32)
    model, x = build_from_arch(arch), example_input(arch)
    conv_total = hand_conv_macs(model, x)
    layout = Layout(model, build_graph(model, x), x, layers="conv")
    assert layout.macs == conv_total
    assert not any(k.startswith("classifier") for k in layout.keys())
    assert {k for k in Layout(model, build_graph(model, x), x).keys() if k.startswith("classifier")} == {
        "classifier.0",
        "classifier.3",
    }  # layers: all prunes the hidden units
    r = prune_to_target(model, "magnitude", 0.99, x, layers="conv", tolerance=0.005, log=quiet)
    assert r.within_tolerance, r.note
    assert r.macs_before == conv_total and r.macs_after == hand_conv_macs(r.model, x)
    fc6, fc7, head = [m for m in r.model.classifier if isinstance(m, nn.Linear)]
    assert (fc6.out_features, fc7.in_features, fc7.out_features, head.in_features) == (4096, 4096, 4096, 4096)
    assert fc6.in_features == 49 * r.model.features[28].out_channels < 25088
    # every layer's count sees the fc layers that the target did not count
    assert r.total_macs_after - r.macs_after >= 4096 * 4096  # fc7 alone
    assert 1 - r.total_macs_after / r.total_macs_before < r.achieved_reduction - 0.03


# ---------------------------------------------------------------- item 6: option-A ResNets


def test_option_a_resnets_have_he_et_al_parameter_counts():
    def params(name):
        return sum(p.numel() for p in build_model(name, 10).parameters())

    assert params("resnet56_a") == pytest.approx(0.85e6, rel=0.01)  # He et al. Table 6: 0.85 M
    assert params("resnet20_a") == pytest.approx(0.27e6, rel=0.01)  # 0.27 M
    assert params("resnet56") > params("resnet56_a")  # option B adds the two projections
    convs = [m for m in build_model("resnet56_a", 10).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 27 and all(c.kernel_size == (3, 3) for c in convs)


def test_option_a_shortcut_is_a_subsampled_zero_padded_identity():
    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def _stream(model):
    """Output widths of the residual stream's writers and of the blocks' inner convs."""
    return ([m.out_channels for m in fixed_layers(model)[1:]], [b.conv1.out_channels for b in model.layers])


@pytest.mark.parametrize("layers", ["all", "conv"])
def test_option_a_only_inner_channels_are_prunable(layers):
    arch = arch_dict("resnet56_a", 10, 3, 16)
    model, x = build_from_arch(arch), example_input(arch)
    keys = Layout(model, build_graph(model, x), x, layers=layers).keys()
    assert sorted(keys) == sorted(f"layers.{i}.conv1" for i in range(27))


def _check_reloads(tmp_path, arch, result):
    path = tmp_path / "pruned.pt"
    save_checkpoint(path, result.model, arch, history=result.history)
    loaded, _ = load_checkpoint(path)
    x = torch.randn(2, 3, arch["input_size"], arch["input_size"])
    result.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model(x), atol=1e-5)


@pytest.mark.slow
def test_resnet56_a_magnitude_reaches_the_largest_paper_target_and_reloads(tmp_path):
    torch.manual_seed(0)
    arch = arch_dict("resnet56_a", 10, 3, 16)
    model, x = build_from_arch(arch), example_input(arch)
    stream_before, inner_before = _stream(model)
    r = prune_to_target(model, "magnitude", 0.9375, x, layers="conv", tolerance=0.001, log=quiet)
    assert r.within_tolerance and abs(r.achieved_reduction - 0.9375) <= 0.001, r.note
    assert r.macs_after == hand_conv_macs(r.model, x)
    stream_after, inner_after = _stream(r.model)
    assert stream_after == stream_before  # the residual stream is whole
    assert all(a < b for a, b in zip(inner_after, inner_before))
    assert r.model.conv1.out_channels == 16 and r.model.fc.in_features == 64
    _check_reloads(tmp_path, arch, r)


@pytest.mark.parametrize("schedule", ["geometric", "authors"])
def test_resnet20_a_taylor_prunes_to_target_and_reloads(tmp_path, schedule):
    torch.manual_seed(0)
    arch = arch_dict("resnet20_a", 10, 3, 8)
    model, x = build_from_arch(arch), example_input(arch)
    stream_before, _ = _stream(model)
    opts = (
        {"steps": 2, "batches_per_step": 2}
        if schedule == "geometric"
        else {"batches_per_step": 1, "prunes_per_step": 16, "lr": 0.01, "momentum": 0.0}
    )
    r = prune_to_target(
        model,
        "taylor",
        0.5,
        x,
        loader=loader(dataset()),
        loss_fn=ce,
        layers="conv",
        tolerance=0.05,
        log=quiet,
        schedule=schedule,
        **opts,
    )
    assert r.counted_layers == "conv" and abs(r.achieved_reduction - 0.5) <= 0.05, r.note
    assert r.macs_after == hand_conv_macs(r.model, x)
    assert _stream(r.model)[0] == stream_before
    if schedule == "authors":
        assert r.trajectory["settings"]["layers"] == "conv"
    _check_reloads(tmp_path, arch, r)
