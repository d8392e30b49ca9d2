"""Any torchvision classifier by name: resolved through torchvision's model registry, its head
resized to the label count and its input conv to the channel count, pruned to a MAC target through
the project's own entry point (one model of each representative family, at 32 px), and the
families the pruning graph cannot handle refused at config validation with the reason."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision
import yaml

import pwprune.config as pc
from helpers import REPO
from pwprune import models, names, weights
from pwprune.checkpoint import load_checkpoint, save_checkpoint
from pwprune.pruning import prune_to_target

torch.set_num_threads(1)
SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"

# the smallest model of each representative family (issue 17); ShuffleNetV2 is refused (below).
# regnet_x_400mf has grouped convs: the channels coupled to them stay whole (graph._is_grouped_conv)
FAMILIES = (
    "resnet18",
    "vgg11",
    "efficientnet_v2_s",
    "mobilenet_v3_small",
    "convnext_tiny",
    "regnet_x_400mf",
    "densenet121",
)
# one model of each refused family (torchvision's ViT and Swin are pruned: tests/test_transformers.py)
REFUSED = ("shufflenet_v2_x0_5", "maxvit_t")
TARGET = 0.5


# ---------------------------------------------------------------- the registry is torchvision's


def test_names_are_torchvision_registry():
    registry = torchvision.models.list_models(module=torchvision.models)
    assert names.TORCHVISION_CLASSIFIERS == tuple(sorted(registry))
    # classifiers only: no detection, segmentation, video or quantized builders
    assert "resnet18" in registry and not any(
        n.startswith(("fasterrcnn", "fcn_", "r3d_", "quantized")) for n in registry
    )
    assert set(REFUSED) <= set(names.REFUSED_MODELS) and not set(REFUSED) & set(names.MODEL_NAMES)
    offered = [n for n in names.TORCHVISION_CLASSIFIERS if n not in names.REFUSED_MODELS]
    assert names.MODEL_NAMES == names.OWN_MODELS + tuple(offered)
    assert models.MODEL_NAMES is names.MODEL_NAMES
    # every refused family names real registry models, and ImageNet files exist for all offered
    for prefix in names.REFUSED_MODEL_FAMILIES:
        assert any(n.startswith(prefix) for n in registry), prefix
    assert set(weights.IMAGENET_FILES) == set(offered)
    for name in offered:
        assert weights.IMAGENET_FILES[name] == Path(torchvision.models.get_model_weights(name).DEFAULT.url).name
    schema = pc.load_schema(SCHEMA)["$defs"]["experiment"]["properties"]["model"]
    assert schema["enum"] == list(names.MODEL_NAMES)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "squeezenet1_1", "googlenet", "densenet121"])
def test_head_follows_the_labels_and_input_conv_the_channels(name):
    torch.manual_seed(0)
    model = models.build_model(name, 5, in_channels=1, input_size=32).eval()
    reference = torchvision.models.get_model(
        name, weights=None, num_classes=5, **models._TORCHVISION_KWARGS.get(name, {})
    )
    assert list(model.state_dict()) == list(reference.state_dict())  # torchvision's layout, key for key
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    (head,) = models.classifier_layers(model)
    assert (head.out_features if isinstance(head, nn.Linear) else head.out_channels) == 5
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)
    binary = models.build_model(name, 2, in_channels=3, input_size=32).eval()
    with torch.no_grad():
        assert binary(torch.randn(2, 3, 32, 32)).shape == (2, 1)  # one logit for two classes


@pytest.mark.parametrize("name", ["squeezenet1_1", "googlenet"])
def test_imagenet_weights_through_the_weights_api_with_a_new_head(name, tmp_path, monkeypatch):
    """A real state dict of the model (as torchvision's file: googlenet's with its auxiliary heads)
    under the name its DEFAULT weights entry gives, in a fixture hub cache: the backbone is that
    file's, the head is new with the label count (squeezenet's is a conv), nothing is downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail(f"download {a}"))
    torch.manual_seed(3)
    kwargs = {"aux_logits": True, "init_weights": True} if name == "googlenet" else {}
    reference = torchvision.models.get_model(name, weights=None, **kwargs)
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    data = buffer.getvalue()
    file = f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (hub / file).write_bytes(data)
    monkeypatch.setattr(torchvision.models.get_model_weights(name).DEFAULT.value, "url", weights.URL_BASE + file)
    model = models.build_model(name, 3, 3, 32, pretrained="imagenet")
    expected = reference.state_dict()
    (head,) = models.classifier_layers(model)
    head_name = models._head_name(model)
    assert (head.out_features if isinstance(head, nn.Linear) else head.out_channels) == 3
    for k, v in model.state_dict().items():
        if not k.startswith(head_name + "."):
            assert torch.equal(v, expected[k]), k
    assert not any(k.startswith("aux") for k in model.state_dict())
    assert models.arch_dict(name, 3, 3, 32, pretrained="imagenet")["input_mean"] == list(weights.IMAGENET_MEAN)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 3)


# ---------------------------------------------------------------- each family prunes to a target


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_family_prunes_to_a_mac_target(name, tmp_path):
    """Magnitude pruning through prune_to_target reaches the target within the tolerance, the
    pruned model runs, and its checkpoint rebuilds (the history replays on a fresh model)."""
    torch.manual_seed(0)
    arch = models.arch_dict(name, 5, 1, 32)
    model = models.build_from_arch(arch).eval()
    result = prune_to_target(
        model, "magnitude", TARGET, models.example_input(arch), tolerance=names.PRUNE_TOLERANCE, log=lambda *a: None
    )
    assert abs(result.achieved_reduction - TARGET) <= names.PRUNE_TOLERANCE, result.note
    assert result.within_tolerance and result.macs_after < result.macs_before
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = result.model.eval()(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    if name == "vgg11":  # 129 M parameters (fc6 alone 103 M): a checkpoint round trip costs ~1 min
        return
    save_checkpoint(tmp_path / "m.pt", result.model, arch, history=result.history)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.allclose(loaded(x), out, atol=1e-5)


# ---------------------------------------------------------------- refused families


def _config(model):
    config = yaml.safe_load((REPO / "params.yaml").read_text())
    config["experiments"]["default"]["model"] = model
    return config


@pytest.mark.parametrize("name", REFUSED)
def test_refused_family_is_refused_at_config_validation_with_the_reason(name):
    with pytest.raises(pc.ConfigError) as e:
        pc.validate(_config(name), SCHEMA)
    assert f"experiments.default.model: {name!r} is refused: {names.REFUSED_MODELS[name]}" in str(e.value)
    with pytest.raises(ValueError, match=f"model {name!r} is refused: "):
        models.build_model(name, 10)
