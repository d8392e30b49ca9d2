"""The paper's training settings as the authors ran them: torchvision ImageNet starting weights
(read from the local torch hub cache, hash-checked, never downloaded) with ImageNet input
normalisation carried by the model's arch, Lightning-style backbone learning-rate scaling, and
MultiStepLR. The weights files here are real torchvision state dicts written by the tests."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
import yaml

import pwprune.config as pc
from helpers import REPO, snakemake
from pwprune import models, names, weights
from pwprune.checkpoint import load_checkpoint, save_checkpoint
from pwprune.loss import make_loss
from pwprune.train import fit, make_loader

torch.set_num_threads(1)
SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"
TORCHVISION_MODELS = ("resnet18", "resnet34", "vgg16", "efficientnet_v2_s", "efficientnet_v2_m")


# ---------------------------------------------------------------- one source of truth


def test_weights_table_matches_torchvision():
    assert tuple(weights.IMAGENET_FILES)[: len(TORCHVISION_MODELS)] == TORCHVISION_MODELS
    assert set(weights.IMAGENET_FILES) == set(models.MODEL_NAMES) - {
        "small_cnn",
        "resnet20",
        "resnet56",
        "resnet20_a",
        "resnet56_a",
    }
    for name, file in weights.IMAGENET_FILES.items():
        default = torchvision.models.get_model_weights(name).DEFAULT
        assert Path(default.url).name == file
        assert default.url == weights.URL_BASE + file
        t = default.transforms()
        assert (tuple(t.mean), tuple(t.std)) == weights.normalisation(name)
    assert weights.normalisation("resnet18") == (weights.IMAGENET_MEAN, weights.IMAGENET_STD)
    schema = pc.load_schema(SCHEMA)["$defs"]["experiment"]["properties"]["pretrained"]
    assert tuple(schema["enum"]) == names.PRETRAINED_CHOICES and schema["default"] == "none"


@pytest.mark.parametrize("env", [{"TORCH_HOME": "th"}, {"XDG_CACHE_HOME": "xdg"}, {}])
def test_torch_free_hub_dir_is_torch_hub_get_dir(monkeypatch, tmp_path, env):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for k, v in env.items():
        monkeypatch.setenv(k, str(tmp_path / v))
    assert weights.hub_dir() == Path(torch.hub.get_dir())


# ---------------------------------------------------------------- the weights file


def _state_bytes(model) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache under TORCH_HOME; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return checkpoints


@pytest.fixture
def imagenet_resnet18(hub, monkeypatch):
    """A real resnet18 state dict (1000-class head) with recognisable values, cached under a name
    whose sha256 prefix is its own; torchvision's DEFAULT entry points at that name."""
    torch.manual_seed(123)
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        reference.conv1.weight.copy_(
            torch.arange(reference.conv1.weight.numel()).view_as(reference.conv1.weight) / 1000
        )
        reference.fc.weight.fill_(7.0)
    data = _state_bytes(reference)
    name = f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (hub / name).write_bytes(data)
    entry = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert torchvision.models.get_model_weights("resnet18").DEFAULT is entry
    # Weights is a plain (not frozen) dataclass: patch the entry's url for this test only
    monkeypatch.setattr(entry.value, "url", weights.URL_BASE + name)
    return reference.state_dict()


@pytest.mark.parametrize("num_classes, n_out", [(2, 1), (3, 3)])
def test_imagenet_weights_are_loaded_with_a_new_head(imagenet_resnet18, hub, num_classes, n_out):
    before = sorted(p.name for p in hub.iterdir())
    model = models.build_model("resnet18", num_classes, 3, 32, pretrained="imagenet")
    state = model.state_dict()
    # the layout of a randomly initialised model with n_out outputs: checkpoints rebuild from it
    fresh = torchvision.models.resnet18(weights=None, num_classes=n_out).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in fresh.items()}
    for k, v in state.items():
        if not k.startswith("fc."):
            assert torch.equal(v, imagenet_resnet18[k]), k
    assert model.fc.out_features == n_out and model.fc.in_features == 512
    assert not torch.any(model.fc.weight == 7.0)  # a new head, not a slice of the ImageNet one
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, n_out)
    assert sorted(p.name for p in hub.iterdir()) == before  # nothing fetched or written


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow)
        if n in ("vgg16", "efficientnet_v2_m", "efficientnet_v2_s", "resnet34")
        else n
        for n in TORCHVISION_MODELS
    ],
)  # those: ~14, ~13, ~5, ~2 s
def test_every_torchvision_model_gets_its_weights_and_a_new_head(name, hub, monkeypatch, tmp_path):
    """The fixture file of each model (a real state dict, its 1000-class head set to 7): the built
    model has the ImageNet backbone, a new n_out head, the layout of weights=None, and its
    checkpoint rebuilds from the arch dict alone."""
    torch.manual_seed(1)
    reference = getattr(torchvision.models, name)(weights=None)
    with torch.no_grad():
        [m for m in reference.modules() if isinstance(m, nn.Linear)][-1].weight.fill_(7.0)
    data = _state_bytes(reference)
    file = f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (hub / file).write_bytes(data)
    del data
    monkeypatch.setattr(torchvision.models.get_model_weights(name).DEFAULT.value, "url", weights.URL_BASE + file)
    expected = reference.state_dict()
    model = models.build_model(name, 3, 3, 32, pretrained="imagenet")
    fresh = getattr(torchvision.models, name)(weights=None, num_classes=3).state_dict()
    state = model.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in fresh.items()}
    changed = [k for k in state if not torch.equal(state[k], expected[k]) if state[k].shape == expected[k].shape]
    head = models.classifier_layers(model)[0]
    assert head.out_features == 3 and not torch.any(head.weight == 7.0)
    assert changed == [], changed  # every tensor but the head's is ImageNet's
    arch = models.arch_dict(name, 3, 3, 32, pretrained="imagenet")
    save_checkpoint(tmp_path / "m.pt", model, arch)
    (hub / file).unlink()
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())


def test_pretrained_checkpoint_rebuilds_without_the_weights_file(imagenet_resnet18, hub, tmp_path):
    arch = models.arch_dict("resnet18", 2, 3, 32, pretrained="imagenet")
    assert arch["input_mean"] == list(weights.IMAGENET_MEAN) and arch["input_std"] == list(weights.IMAGENET_STD)
    model = models.build_model("resnet18", 2, 3, 32, pretrained="imagenet")
    save_checkpoint(tmp_path / "m.pt", model, arch)
    for f in hub.iterdir():
        f.unlink()  # loading a checkpoint needs no ImageNet file: it rebuilds with weights=None
    loaded, info = load_checkpoint(tmp_path / "m.pt")
    assert info["arch"] == arch
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_wrong_content_under_the_real_name_is_refused(hub):
    path = hub / "resnet18-f37072fd.pth"
    path.write_bytes(_state_bytes(torchvision.models.resnet18(weights=None)))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    with pytest.raises(ValueError) as e:
        models.build_model("resnet18", 2, pretrained="imagenet")
    msg = str(e.value)
    assert str(path) in msg and "f37072fd" in msg and actual in msg
    assert sorted(p.name for p in hub.iterdir()) == [path.name]


def test_missing_file_is_refused_with_the_path_and_the_command(hub):
    with pytest.raises(FileNotFoundError) as e:
        models.build_model("vgg16", 2, pretrained="imagenet")
    msg = str(e.value)
    assert str(hub / "vgg16-397923af.pth") in msg
    assert "torchvision.models.vgg16(weights='DEFAULT')" in msg
    assert "wget https://download.pytorch.org/models/vgg16-397923af.pth -P " + str(hub) in msg
    assert list(hub.iterdir()) == []


def test_pretrained_refuses_other_channels_and_models(hub):
    with pytest.raises(ValueError, match=r"in_channels=1 for resnet18"):
        models.build_model("resnet18", 2, in_channels=1, pretrained="imagenet")
    own = r"only available for torchvision's classifiers \(every model but pwprune's own: small_cnn, .*\)"
    with pytest.raises(ValueError, match=own + r"; got model 'small_cnn'"):
        models.build_model("small_cnn", 2, pretrained="imagenet")
    with pytest.raises(ValueError, match="pretrained must be"):
        models.build_model("resnet18", 2, pretrained="yes")


# ---------------------------------------------------------------- input normalisation


def _prepared(n=10, c=3, size=8):
    rng = np.random.default_rng(0)
    split = SimpleNamespace(
        x=rng.integers(0, 256, (n, c, size, size), dtype=np.uint8), y=np.arange(n) % 2, g=np.arange(n) % 2
    )
    meta = {"mean": [0.5] * c, "std": [0.25] * c, "input_size": size}
    return SimpleNamespace(splits={"train": split, "test": split}, meta=meta)


def test_loaders_use_the_arch_normalisation_when_it_has_one():
    from pwprune.stages.inputs import eval_loader, train_loader

    prepared = _prepared()
    raw = torch.from_numpy(prepared.splits["train"].x).float() / 255
    mean, std = torch.tensor(weights.IMAGENET_MEAN).view(3, 1, 1), torch.tensor(weights.IMAGENET_STD).view(3, 1, 1)
    imagenet = models.arch_dict("resnet18", 2, 3, 8, pretrained="imagenet")
    plain = models.arch_dict("resnet18", 2, 3, 8)  # as every checkpoint written before
    for arch, want in ((imagenet, (raw - mean) / std), (plain, (raw - 0.5) / 0.25), (None, (raw - 0.5) / 0.25)):
        for loader in (
            train_loader(prepared, 10, 0, False, shuffle=False, arch=arch),
            eval_loader(prepared, "test", 10, arch),
        ):
            x = next(iter(loader))[0]
            assert torch.allclose(x, want, atol=1e-6)
    with pytest.raises(ValueError, match="input_mean/input_std"):
        train_loader(prepared, 10, 0, False, arch={**imagenet, "input_std": [0.2, 0.2]})


@pytest.mark.slow
def test_train_dense_stage_starts_from_imagenet(imagenet_resnet18, tmp_path):
    from pwprune.data import prepare
    from pwprune.stages.train import train_dense_stage

    data = tmp_path / "prepared"
    prepare({"kind": "digits", "image_size": 8, "train_copies": 1, "seed": 0}, out_dir=data, log=lambda *a: None)
    out = {k: tmp_path / "dense" / f"{k}.{ext}" for k, ext in (("model", "pt"), ("history", "json"), ("teacher", "pt"))}
    loop = {"epochs": 1, "lr": 0.0, "batch_size": 512, "backbone_lr_scale": 0.1}
    train_dense_stage(data, "resnet18", loop, 0, "cpu", "t", out, log=lambda *a: None, pretrained="imagenet")
    model, info = load_checkpoint(out["model"])
    assert info["meta"]["pretrained"] == "imagenet"
    assert info["arch"]["input_mean"] == list(weights.IMAGENET_MEAN)
    # lr 0: the backbone is still ImageNet's (BatchNorm running statistics do move in training mode)
    for k, v in model.state_dict().items():
        if not k.startswith("fc.") and "running" not in k and "num_batches" not in k:
            assert torch.equal(v, imagenet_resnet18[k]), k
    history = json.loads(out["history"].read_text())
    assert history[0]["lr"] == 0.0 and history[0]["backbone_lr"] == 0.0


# ---------------------------------------------------------------- start-up presence check


def _config_with_pretrained(root: Path) -> Path:
    smoke = yaml.safe_load((REPO / "tests" / "smoke.yaml").read_text())
    exp = smoke["experiments"]["smoke"]
    exp.update(model="resnet18", pretrained="imagenet")
    exp["dataset"]["image_size"] = 32
    path = root / "pretrained.yaml"
    path.write_text(yaml.safe_dump(smoke))
    return path


@pytest.mark.e2e
def test_startup_check_names_the_missing_file(repo_copy, tmp_path):
    cfg = _config_with_pretrained(repo_copy)
    torch_home = tmp_path / "torch"
    env = {"TORCH_HOME": str(torch_home)}
    proc = snakemake(repo_copy, "-n", "results/figures/all", f"--configfile={cfg}", check=False, env=env)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "experiments.smoke.pretrained" in out and str(expected) in out, out[-3000:]
    assert "torchvision.models.resnet18(weights='DEFAULT')" in out

    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"presence only; the dense job checks the hash")
    proc = snakemake(repo_copy, "-n", "results/figures/all", f"--configfile={cfg}", env=env)
    assert "train_dense" in proc.stdout + proc.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_changing_pretrained_reruns_dense_training(repo_copy, tmp_path):
    smoke = yaml.safe_load((REPO / "tests" / "smoke.yaml").read_text())
    exp = smoke["experiments"]["smoke"]
    exp.update(model="resnet18", train={"epochs": 1, "lr": 0.001, "batch_size": 512})
    exp["dataset"].update(image_size=8, train_copies=1)
    cfg = repo_copy / "plain.yaml"
    cfg.write_text(yaml.safe_dump(smoke))
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    target = "results/smoke/seed0/dense/model.pt"
    snakemake(repo_copy, target, "--cores", "2", f"--configfile={cfg}", env=env)
    proc = snakemake(repo_copy, "-n", target, f"--configfile={cfg}", env=env)
    assert "train_dense" not in proc.stdout  # up to date

    exp["pretrained"] = "imagenet"
    cfg.write_text(yaml.safe_dump(smoke))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"presence only")
    proc = snakemake(repo_copy, "-n", target, f"--configfile={cfg}", env=env)
    out = proc.stdout + proc.stderr
    assert "train_dense" in out and "params have changed" in out.lower(), out[-3000:]
    assert "before: 'none' now: 'imagenet'" in out


# ---------------------------------------------------------------- learning-rate schedules


class TinySplit(torch.utils.data.Dataset):
    def __init__(self, n=32, d=6, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=gen)
        self.y = self.x[:, :3].argmax(1)
        self.g = torch.randint(0, 2, (n,), generator=gen)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.g[i], torch.tensor(i)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def _fit(model, batch_size=8, **kw):
    args = dict(epochs=6, lr=1e-2, weight_decay=0.0, loss_fn=make_loss("ce", 0.5, 1.0), log=lambda *a: None)
    args.update(kw)
    return fit(model, make_loader(TinySplit(), batch_size, shuffle=True, seed=0), **args)


@pytest.fixture
def optimizers(monkeypatch):
    """Every AdamW that fit builds (a subclass that records itself; it optimises as AdamW)."""
    made = []

    class Recording(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    return made


def test_backbone_lr_follows_lightning_backbone_finetuning(optimizers):
    lr, scale, growth, epochs = 1e-2, 0.1, 2.0, 6
    model = _model()
    history = _fit(model, epochs=epochs, lr=lr, backbone_lr_scale=scale, backbone_lr_growth=growth)
    head = [lr / 2 * (1 + math.cos(math.pi * e / epochs)) for e in range(epochs)]
    assert [h["lr"] for h in history] == pytest.approx(head)
    # min(lr * scale * growth**(e-1), head_lr(e)): 1e-3, 2e-3, 4e-3, then aligned with the head
    want = [min(lr * scale * growth**e, head[e]) for e in range(epochs)]
    assert [h["backbone_lr"] for h in history] == pytest.approx(want)
    assert want[2] < head[2] and want[3] == head[3]  # the test crosses the alignment point
    (opt,) = optimizers
    assert len(opt.param_groups) == 2
    params = list(model.parameters())
    assert opt.param_groups[0]["params"] == params[-2:]  # the head: the final Linear
    assert opt.param_groups[1]["params"] == params[:-2]


def test_backbone_lr_without_growth_and_with_multistep():
    lr = 1e-2
    history = _fit(
        _model(),
        lr=lr,
        backbone_lr_scale=0.3,
        backbone_lr_growth=1.0,
        scheduler="multistep",
        milestones=[2, 4],
        lr_decay=0.1,
    )
    head = [lr, lr, lr * 0.1, lr * 0.1, lr * 0.01, lr * 0.01]
    assert [h["lr"] for h in history] == pytest.approx(head)
    assert [h["backbone_lr"] for h in history] == pytest.approx([min(lr * 0.3, h) for h in head])


def test_head_and_backbone_move_by_their_own_lr():
    """One AdamW step moves every weight by lr * g / (|g| + eps), i.e. by ~lr where g != 0."""
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    lr, scale = 1e-2, 0.1
    _fit(model, batch_size=32, epochs=1, lr=lr, backbone_lr_scale=scale)
    moved = [(p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before)]
    assert moved[-2:] == pytest.approx([lr, lr], rel=1e-3)  # the head: the final Linear
    assert moved[:-2] == pytest.approx([lr * scale] * 4, rel=1e-3)


def test_scale_one_is_the_single_group_of_before(optimizers):
    a, b = _model(), _model()
    ha = _fit(a)
    hb = _fit(b, backbone_lr_scale=1.0, backbone_lr_growth=2.0)
    assert [len(o.param_groups) for o in optimizers] == [1, 1]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert [h["lr"] for h in ha] == [h["lr"] for h in hb] == [h["backbone_lr"] for h in hb]
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]


def test_multistep_drops_by_lr_decay_exactly_at_the_milestones():
    history = _fit(
        _model(), epochs=7, lr=0.1, optimizer="sgd", scheduler="multistep", milestones=[2, 3, 5], lr_decay=0.5
    )
    lrs = [h["lr"] for h in history]
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.025, 0.0125, 0.0125])
    # torch's MultiStepLR semantics: epochs 1..m train with the lr before the drop at milestone m
    for m in (2, 3, 5):
        assert lrs[m] == pytest.approx(lrs[m - 1] * 0.5)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(scheduler="multistep"), "milestones"),
        (dict(scheduler="multistep", milestones=[3, 3]), "strictly increasing"),
        (dict(scheduler="multistep", milestones=[0, 2]), "positive"),
        (dict(scheduler="multistep", milestones=[2], lr_decay=1.5), "lr_decay"),
        (dict(backbone_lr_scale=0.0), "backbone_lr_scale"),
        (dict(backbone_lr_scale=1.5), "backbone_lr_scale"),
        (dict(backbone_lr_growth=0.5), "backbone_lr_growth"),
    ],
)
def test_fit_refuses_bad_schedule_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        _fit(_model(), **kw)


# ---------------------------------------------------------------- configuration


@pytest.fixture
def cfg():
    """tests/smoke.yaml on its own (experiment "smoke"): independent of params.yaml's experiments."""
    config = copy.deepcopy(pc.load_yaml_strict(REPO / "tests" / "smoke.yaml"))
    config["device"] = "cpu"
    config["experiments"]["other"] = copy.deepcopy(config["experiments"]["smoke"])
    return config


def _problems(config) -> str:
    with pytest.raises(pc.ConfigError) as e:
        pc.validate(config, SCHEMA)
    return str(e.value)


def test_pretrained_on_a_model_without_imagenet_weights_names_the_key(cfg):
    cfg["experiments"]["smoke"].update(model="small_cnn", pretrained="imagenet")
    msg = _problems(cfg)
    assert (
        "experiments.smoke.pretrained: 'imagenet' is not available for model 'small_cnn'; "
        "valid models: torchvision's classifiers (every model but pwprune's own: small_cnn, resnet20, "
        "resnet56, resnet20_a, resnet56_a)"
    ) in msg
    cfg["experiments"]["smoke"]["pretrained"] = "imagenet21k"
    assert "experiments.smoke.pretrained: 'imagenet21k' is not valid; valid values: none, imagenet" in _problems(cfg)


@pytest.mark.parametrize(
    "loop, mutate, what",
    [
        ("train", dict(scheduler="multistep"), "milestones: required with scheduler: multistep"),
        ("finetune", dict(scheduler="multistep", milestones=[5, 3]), "milestones: [5, 3] must be strictly increasing"),
        ("train", dict(milestones=[5]), "milestones: only used with scheduler: multistep"),
        ("train", dict(scheduler="multistep", milestones=[0]), "milestones.0: 0 is out of range; must be >= 1"),
        ("train", dict(backbone_lr_scale=1.5), "backbone_lr_scale: 1.5 is out of range; must be <= 1"),
        ("train", dict(backbone_lr_growth=0.5), "backbone_lr_growth: 0.5 is out of range; must be >= 1"),
        ("finetune", dict(lr_decay=0), "lr_decay: 0 is out of range; must be > 0"),
    ],
)
def test_schedule_config_errors_name_the_key(cfg, loop, mutate, what):
    cfg["experiments"]["smoke"][loop].update(mutate)
    assert f"experiments.smoke.{loop}.{what}" in _problems(cfg)


def test_defaults_and_the_start_up_check(cfg, monkeypatch, tmp_path):
    out = pc.validate(cfg, SCHEMA)
    exp = out["experiments"]["smoke"]
    assert exp["pretrained"] == "none"
    assert (exp["train"]["backbone_lr_scale"], exp["train"]["backbone_lr_growth"], exp["train"]["lr_decay"]) == (
        1.0,
        1.0,
        0.1,
    )
    assert "milestones" not in exp["train"]
    pc.check_pretrained(out)  # nothing pretrained, nothing needed
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    exp.update(model="resnet34", pretrained="imagenet")
    with pytest.raises(pc.ConfigError, match=r"experiments\.smoke\.pretrained: .*resnet34-b627a593\.pth"):
        pc.check_pretrained(out)
    out["experiments"]["other"].update(model="resnet18", pretrained="imagenet")  # not active: not checked
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth").write_bytes(b"x")
    pc.check_pretrained(out)
