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
# torchvision.models.get_model_weights(name).DEFAULT.url; tests/test_paper_training.py checks
# that they agree, so torchvision stays the one source of truth).
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "vgg16": "vgg16-397923af.pth",
    "efficientnet_v2_s": "efficientnet_v2_s-dd5fe13b.pth",
    "efficientnet_v2_m": "efficientnet_v2_m-dc08266a.pth",
}
URL_BASE = "https://download.pytorch.org/models/"

# The normalisation every torchvision ImageNet classifier was trained with (its transforms'
# mean/std; also checked against torchvision by the tests).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
            f"pretrained: imagenet is only available for {', '.join(IMAGENET_FILES)}; "
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
