"""Pretrained (ImageNet) starting weights: which file each torchvision model needs, where torch's
hub cache keeps it, and the input normalisation the weights were trained with.

Torch-free on purpose: Snakemake checks at start-up (dry runs included) that the file of every
active experiment with `pretrained: imagenet` is present, and that check must stay cheap.
pwprune never downloads: the files are fetched once on a machine with internet (see `fetch_hint`).
"""

from __future__ import annotations

import os
from pathlib import Path

# Model name -> the file name of torchvision's DEFAULT weights (the basename of
# torchvision.models.get_model_weights(name).DEFAULT.url; tests/test_paper_training.py and
# tests/test_model_families.py check that they agree, so torchvision stays the one source of truth).
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "vgg16": "vgg16-397923af.pth",
    "efficientnet_v2_s": "efficientnet_v2_s-dd5fe13b.pth",
    "efficientnet_v2_m": "efficientnet_v2_m-dc08266a.pth",
    # every other torchvision classifier that pwprune offers (names.MODEL_NAMES), in name order
    "alexnet": "alexnet-owt-7be5be79.pth",
    "convnext_base": "convnext_base-6075fbad.pth",
    "convnext_large": "convnext_large-ea097f82.pth",
    "convnext_small": "convnext_small-0c510722.pth",
    "convnext_tiny": "convnext_tiny-983f1562.pth",
    "densenet121": "densenet121-a639ec97.pth",
    "densenet161": "densenet161-8d451a50.pth",
    "densenet169": "densenet169-b2777c0a.pth",
    "densenet201": "densenet201-c1103571.pth",
    "efficientnet_b0": "efficientnet_b0_rwightman-7f5810bc.pth",
    "efficientnet_b1": "efficientnet_b1-c27df63c.pth",
    "efficientnet_b2": "efficientnet_b2_rwightman-c35c1473.pth",
    "efficientnet_b3": "efficientnet_b3_rwightman-b3899882.pth",
    "efficientnet_b4": "efficientnet_b4_rwightman-23ab8bcd.pth",
    "efficientnet_b5": "efficientnet_b5_lukemelas-1a07897c.pth",
    "efficientnet_b6": "efficientnet_b6_lukemelas-24a108a5.pth",
    "efficientnet_b7": "efficientnet_b7_lukemelas-c5b4e57e.pth",
    "efficientnet_v2_l": "efficientnet_v2_l-59c71312.pth",
    "googlenet": "googlenet-1378be20.pth",
    "inception_v3": "inception_v3_google-0cc3c7bd.pth",
    "mnasnet0_5": "mnasnet0.5_top1_67.823-3ffadce67e.pth",
    "mnasnet0_75": "mnasnet0_75-7090bc5f.pth",
    "mnasnet1_0": "mnasnet1.0_top1_73.512-f206786ef8.pth",
    "mnasnet1_3": "mnasnet1_3-a4c69d6f.pth",
    "mobilenet_v2": "mobilenet_v2-7ebf99e0.pth",
    "mobilenet_v3_large": "mobilenet_v3_large-5c1a4163.pth",
    "mobilenet_v3_small": "mobilenet_v3_small-047dcff4.pth",
    "regnet_x_16gf": "regnet_x_16gf-ba3796d7.pth",
    "regnet_x_1_6gf": "regnet_x_1_6gf-a12f2b72.pth",
    "regnet_x_32gf": "regnet_x_32gf-6eb8fdc6.pth",
    "regnet_x_3_2gf": "regnet_x_3_2gf-7071aa85.pth",
    "regnet_x_400mf": "regnet_x_400mf-62229a5f.pth",
    "regnet_x_800mf": "regnet_x_800mf-94a99ebd.pth",
    "regnet_x_8gf": "regnet_x_8gf-2b70d774.pth",
    "regnet_y_128gf": "regnet_y_128gf_swag-c8ce3e52.pth",
    "regnet_y_16gf": "regnet_y_16gf-3e4a00f9.pth",
    "regnet_y_1_6gf": "regnet_y_1_6gf-0d7bc02a.pth",
    "regnet_y_32gf": "regnet_y_32gf-8db6d4b5.pth",
    "regnet_y_3_2gf": "regnet_y_3_2gf-9180c971.pth",
    "regnet_y_400mf": "regnet_y_400mf-e6988f5f.pth",
    "regnet_y_800mf": "regnet_y_800mf-58fc7688.pth",
    "regnet_y_8gf": "regnet_y_8gf-dc2b1b54.pth",
    "resnet101": "resnet101-cd907fc2.pth",
    "resnet152": "resnet152-f82ba261.pth",
    "resnet50": "resnet50-11ad3fa6.pth",
    "resnext101_32x8d": "resnext101_32x8d-110c445d.pth",
    "resnext101_64x4d": "resnext101_64x4d-173b62eb.pth",
    "resnext50_32x4d": "resnext50_32x4d-1a0047aa.pth",
    "squeezenet1_0": "squeezenet1_0-b66bff10.pth",
    "squeezenet1_1": "squeezenet1_1-b8a52dc0.pth",
    "swin_b": "swin_b-68c6b09e.pth",
    "swin_s": "swin_s-5e29d889.pth",
    "swin_t": "swin_t-704ceda3.pth",
    "swin_v2_b": "swin_v2_b-781e5279.pth",
    "swin_v2_s": "swin_v2_s-637d8ceb.pth",
    "swin_v2_t": "swin_v2_t-b137f0e2.pth",
    "vgg11": "vgg11-8a719046.pth",
    "vgg11_bn": "vgg11_bn-6002323d.pth",
    "vgg13": "vgg13-19584684.pth",
    "vgg13_bn": "vgg13_bn-abd245e5.pth",
    "vgg16_bn": "vgg16_bn-6c64b313.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
    "vgg19_bn": "vgg19_bn-c79401a0.pth",
    "vit_b_16": "vit_b_16-c867db91.pth",
    "vit_b_32": "vit_b_32-d86f8d99.pth",
    "vit_h_14": "vit_h_14_swag-80465313.pth",
    "vit_l_16": "vit_l_16-852ce7e3.pth",
    "vit_l_32": "vit_l_32-c7638314.pth",
    "wide_resnet101_2": "wide_resnet101_2-d733dc28.pth",
    "wide_resnet50_2": "wide_resnet50_2-9ba9bcbe.pth",
}
URL_BASE = "https://download.pytorch.org/models/"

# The normalisation every torchvision ImageNet classifier was trained with (its transforms'
# mean/std; also checked against torchvision by the tests).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the models whose DEFAULT weights expect another normalisation (their transforms' mean, std)
OTHER_NORMALISATION = {"efficientnet_v2_l": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the DEFAULT ImageNet weights of model `name` expect of their inputs."""
    return OTHER_NORMALISATION.get(name, (IMAGENET_MEAN, IMAGENET_STD))


def imagenet_models() -> str:
    """Which models have ImageNet weights, in words (for error messages)."""
    from pwprune.names import OWN_MODELS

    return f"torchvision's classifiers (every model but pwprune's own: {', '.join(OWN_MODELS)})"


def hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub (torch.hub.set_dir is not seen here)."""
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub"


def fetch_hint(name: str, path, url=None) -> str:
    """The one command that puts `path` in place on a machine with internet."""
    path = Path(path)
    torch_home = path.parent.parent.parent  # <TORCH_HOME>/hub/checkpoints/<file>
    url = url or URL_BASE + path.name
    return (
        f'fetch it once on a machine with internet: `TORCH_HOME={torch_home} python -c "import '
        f"torchvision; torchvision.models.{name}(weights='DEFAULT')\"` or `wget {url} -P "
        f"{path.parent}`, and copy it to {path} here"
    )


def check_pretrained_file(name: str, directory=None) -> Path:
    """Path of the ImageNet weights file of model `name`; ValueError naming the path and the
    command that fetches it when it is absent. Presence only (the hash is checked at loading)."""
    if name not in IMAGENET_FILES:
        raise ValueError(
            f"pretrained: imagenet is only available for {imagenet_models()}; "
            f"model {name!r} has no ImageNet weights (use pretrained: none)"
        )
    path = (Path(directory) if directory is not None else hub_dir() / "checkpoints") / IMAGENET_FILES[name]
    if not path.is_file():
        raise ValueError(
            f"the ImageNet weights of {name} are missing: expected {path} (torch hub "
            f"cache; set TORCH_HOME to use another). pwprune never downloads; "
            f"{fetch_hint(name, path)}"
        )
    return path


# ---- timm's pretrained weights: from the local Hugging Face cache (timm's own, never downloaded)
TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a hub repo, in order


def hf_hub_cache() -> Path:
    """huggingface_hub's cache folder without importing it: $HF_HUB_CACHE, else $HF_HOME/hub,
    else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if os.getenv("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    home = os.getenv("HF_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def timm_fetch_hint(name: str) -> str:
    """The one command that puts timm model `name`'s default weights in the Hugging Face cache."""
    return (
        f"fetch it once on a machine with internet: `python -c \"import timm; timm.create_model('{name}', "
        f'pretrained=True)"` (with the same HF_HOME), and copy {hf_hub_cache()} here'
    )


def timm_local_file(name: str, path) -> Path:
    """A named local file of timm model `name`'s weights (`pretrained_file`: a .safetensors file,
    or a .bin/.pth state dict read with weights_only=True). ValueError naming the path and the
    fetch command when it is absent."""
    file = Path(os.path.expanduser(str(path)))
    if not file.is_file():
        raise ValueError(
            f"the pretrained weights file of timm/{name} is missing: {file} (pretrained_file). pwprune never "
            f"downloads; put the file there, or {timm_fetch_hint(name)} and name the cached file"
        )
    return file


def timm_weights_file(name: str, cfg) -> Path:
    """The file of timm model `name`'s default pretrained weights (its pretrained cfg: hf_hub_id)
    in the Hugging Face cache: models--<org>--<repo>/snapshots/<refs/main>/model.safetensors (or
    pytorch_model.bin). ValueError with the path and the fetch command when it is absent."""
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        raise ValueError(f"timm/{name} has no pretrained weights on the Hugging Face hub; use pretrained: none")
    repo = hf_hub_cache() / ("models--" + hub_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    snapshot = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else "main")
    for file in TIMM_WEIGHT_FILES:
        if (snapshot / file).is_file():
            return snapshot / file
    raise ValueError(
        f"the pretrained weights of timm/{name} are missing: expected {snapshot / TIMM_WEIGHT_FILES[0]} "
        f"(Hugging Face cache of {hub_id}; set HF_HOME or HF_HUB_CACHE to use another). pwprune never "
        f"downloads; {timm_fetch_hint(name)}"
    )
