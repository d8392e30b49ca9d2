import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from pwprune.models import (
    arch_dict,
    build_from_arch,
    build_model,
    classifier_layers,
    example_input,
    num_outputs,
)

# small inputs keep the torchvision models cheap on CPU
SIZES = {
    "small_cnn": 16,
    "resnet20": 32,
    "resnet56": 32,
    "resnet20_a": 16,
    "resnet56_a": 16,
    "resnet18": 32,
    "resnet34": 32,
    "vgg16": 32,
    "efficientnet_v2_s": 32,
    "efficientnet_v2_m": 32,
}


def test_num_outputs_binary_is_one_logit():
    assert num_outputs(2) == 1
    assert num_outputs(10) == 10
    with pytest.raises(ValueError, match="num_classes"):
        num_outputs(1)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n for n in SIZES]
)  # vgg16: ~1.5 s; the other torchvision families: tests/test_model_families.py
@pytest.mark.parametrize("num_classes,in_channels", [(10, 3), (2, 1)])
def test_every_model_builds_and_runs(name, num_classes, in_channels):
    arch = arch_dict(name, num_classes, in_channels, SIZES[name])
    model = build_from_arch(arch).eval()
    x = example_input(arch)
    assert x.shape == (1, in_channels, SIZES[name], SIZES[name])
    with torch.no_grad():
        out = model(torch.randn(2, *x.shape[1:]))
    assert out.shape == (2, num_outputs(num_classes))
    (clf,) = classifier_layers(model)
    assert isinstance(clf, nn.Linear) and clf.out_features == num_outputs(num_classes)


def test_same_seed_same_weights():
    torch.manual_seed(0)
    a = build_model("resnet20", 10)
    torch.manual_seed(0)
    b = build_model("resnet20", 10)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_cifar_resnet_depths_and_projection_shortcuts():
    def convs(m):
        return [c for c in m.modules() if isinstance(c, nn.Conv2d)]

    r20, r56 = build_model("resnet20", 10), build_model("resnet56", 10)
    # 1 stem + 2 per block + 2 projection shortcuts (stage transitions 16->32, 32->64)
    assert len(convs(r20)) == 1 + 2 * 9 + 2
    assert len(convs(r56)) == 1 + 2 * 27 + 2
    assert [c.out_channels for c in convs(r20) if c.kernel_size == (1, 1)] == [32, 64]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet20"):
        build_model("resnet99", 10)
    with pytest.raises(ValueError, match="unknown model"):
        arch_dict("nope", 10, 3, 32)
    with pytest.raises(ValueError, match="input_size"):
        build_model("vgg16", 10, 3, 16)
    with pytest.raises(ValueError, match="missing"):
        build_from_arch({"name": "small_cnn"})


def test_arch_dict_is_json_able():
    import json

    arch = arch_dict("small_cnn", 10, 1, 16)
    assert json.loads(json.dumps(arch)) == arch


@pytest.mark.slow
def test_small_cnn_does_not_import_torchvision():
    code = (
        "import sys; from pwprune.models import build_model; build_model('small_cnn', 10, 1, 16); "
        "build_model('resnet20', 2); assert 'torchvision' not in sys.modules, 'torchvision imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
