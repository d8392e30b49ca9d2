"""CelebA: a binary target attribute (default Blond_Hair), groups from a second attribute
(default Male), on the official train/valid/test partition. `group` may also be a list of
attributes (e.g. [Male, Young]): the groups are then their intersections, named from the value
names ("female & old", "female & young", "male & old", "male & young"; pwprune.data.groups gives
the order, first attribute slowest); every combination is a group, an empty one included.

Read through `torchvision.datasets.CelebA(root, split=..., target_type="attr", download=False)`
from `root/celeba/` (img_align_celeba/*.jpg, list_attr_celeba.txt, identity_CelebA.txt,
list_bbox_celeba.txt, list_landmarks_align_celeba.txt, list_eval_partition.txt). torchvision
checks the md5 of the five text files against the official ones (images are not hashed), so only
the real annotation files load; we keep that check and report a failure as corrupted data.

Images (178x218 aligned crops) are centre-cropped to a square and resized to `image_size`.
`val_fraction` does not apply: the official partition fixes val and test.

Re-balanced training subsets (`rebalance: {alpha: a, beta: b}`; the paper's (1,1), (5,1), (1,5)),
with the authors' meaning of alpha and beta (robbiemeyer/pw_loss_pruning, datasets/helpers.py,
get_celebA_data): the smallest (label, group) cell of the training split (blond males by default)
is kept whole, at n images; every other cell is subsampled (seeded, without replacement) to
    n * (alpha if its group differs from the minority cell's group else 1)
      * (beta  if its label differs from the minority cell's label else 1),
i.e. alpha scales the group imbalance and beta the class imbalance relative to the minority cell:
(1,1) makes all four cells equal, (5,1) gives five females per male with balanced classes,
(1,5) gives five non-blond per blond image with groups balanced inside each class. If a cell has
fewer images than its target, n shrinks so that the ratios still hold exactly (logged; the
authors' code instead takes whatever the cell holds). val and test keep the official partition
unchanged, so results stay comparable across subsets.
"""

from __future__ import annotations

import os

import numpy as np

from .common import DatasetError, square_resize
from .groups import attribute_list, combine

ATTRIBUTES = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
]
# the files torchvision's CelebA._check_integrity requires (md5-checked) besides the image folder
TEXT_FILES = ["list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
              "list_landmarks_align_celeba.txt", "list_eval_partition.txt"]
NICE_NAMES = {"Male": ["female", "male"], "Young": ["old", "young"]}
DEFAULTS = {
    "image_size": 64,
    "val_fraction": None,  # accepted for a uniform config, unused: the official partition decides
    "target": "Blond_Hair",
    "group": "Male",
    "rebalance": None,
}
SPLITS = {"train": "train", "val": "valid", "test": "test"}  # ours -> torchvision's


def value_names(attr: str) -> list:
    return list(NICE_NAMES.get(attr, [f"not {attr}", attr]))


def group_attributes(cfg: dict) -> list:
    """The config's `group`: one attribute name or a list of them (intersectional groups)."""
    try:
        return attribute_list(cfg["group"], "celeba: group")
    except ValueError as e:
        raise DatasetError(f"{e} (e.g. Male or [Male, Young])") from None


def validate(cfg: dict, valid=ATTRIBUTES):
    if cfg["target"] not in valid:
        raise DatasetError(
            f"celeba: target attribute {cfg['target']!r} is unknown; valid attributes: {', '.join(valid)}")
    for a in group_attributes(cfg):
        if a not in valid:
            raise DatasetError(f"celeba: group attribute {a!r} is unknown; valid attributes: {', '.join(valid)}")
        if a == cfg["target"]:
            raise DatasetError(
                f"celeba: target and group are both {a!r}; choose a group attribute other than the target")
    rb = cfg["rebalance"]
    if rb is not None:
        if not isinstance(rb, dict) or set(rb) - {"alpha", "beta"}:
            raise DatasetError(f"celeba: rebalance {rb!r} is invalid; expected null or {{alpha: <number>, beta: <number>}}")
        for k in ("alpha", "beta"):
            v = rb.get(k, 1)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise DatasetError(f"celeba: rebalance.{k} = {v!r} is invalid; must be a number > 0")
    if not isinstance(cfg["image_size"], int) or cfg["image_size"] < 8:
        raise DatasetError(f"celeba: image_size {cfg['image_size']!r} is invalid; must be an int >= 8")


def extra_splits(cfg: dict) -> list:
    return []


def how_to_get(root) -> str:
    return (f"Get it with `dvc pull` (if this project's remote holds it), or download it once with torchvision: "
            f"python -c \"import torchvision; torchvision.datasets.CelebA('{root}', download=True)\" "
            f"(needs gdown), or from the official site https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
            f"(Align&Cropped images + annotation files) unpacked into {os.path.join(root, 'celeba')}/")


def check_files(root, cfg=None):
    folder = os.path.join(root, "celeba")
    need = [os.path.join(folder, f) for f in TEXT_FILES]
    missing = [p for p in need if not os.path.isfile(p)]
    img_dir = os.path.join(folder, "img_align_celeba")
    if not os.path.isdir(img_dir):
        missing.append(img_dir + "/")
    if missing:
        raise DatasetError(f"CelebA is missing or incomplete: expected {folder}/ with img_align_celeba/ and "
                           f"{', '.join(TEXT_FILES)}; missing: {', '.join(missing)}. " + how_to_get(root))


def rebalance(y: np.ndarray, g: np.ndarray, alpha: float, beta: float, rng, log=print) -> np.ndarray:
    """Indices of the re-balanced subset (see the module docstring), sorted."""
    cells = sorted({(int(a), int(b)) for a, b in zip(y, g)})
    members = {c: np.flatnonzero((y == c[0]) & (g == c[1])) for c in cells}
    lo = min(cells, key=lambda c: len(members[c]))
    # cells are (label, group): alpha scales the other group, beta the other label (the authors' meaning)
    factor = {c: (alpha if c[1] != lo[1] else 1.0) * (beta if c[0] != lo[0] else 1.0) for c in cells}
    n = min([len(members[lo])] + [int(len(members[c]) // factor[c]) for c in cells])
    if n < len(members[lo]):
        log(f"celeba rebalance: not enough images to keep the minority cell {lo} whole "
            f"({len(members[lo])}); using {n} so the alpha/beta ratios hold")
    keep = []
    for c in cells:
        k = int(round(n * factor[c]))
        keep.append(members[c] if k >= len(members[c]) else rng.choice(members[c], size=k, replace=False))
        log(f"celeba rebalance: cell (label={c[0]}, group={c[1]}): {len(members[c])} -> {min(k, len(members[c]))}")
    return np.sort(np.concatenate(keep))


def build(cfg: dict, raw_root, log=print) -> dict:
    from torchvision.datasets import CelebA  # lazy: torchvision costs ~1.5 s to import

    check_files(raw_root)
    folder = os.path.join(raw_root, "celeba")
    datasets = {}
    for ours, theirs in SPLITS.items():
        try:
            datasets[ours] = CelebA(raw_root, split=theirs, target_type="attr", download=False)
        except RuntimeError as e:  # torchvision's md5 check of the annotation files failed
            raise DatasetError(f"CelebA annotation files in {folder} failed torchvision's integrity check ({e}); "
                               f"they are truncated or not the official ones. " + how_to_get(raw_root)) from None
        except (ValueError, IndexError, OSError) as e:
            raise DatasetError(f"CelebA annotation files in {folder} could not be parsed ({type(e).__name__}: {e}). "
                               + how_to_get(raw_root)) from None
    # the official header line ends with a space, which torchvision's csv reader turns into an empty name
    names = [a for a in datasets["train"].attr_names if a]
    validate(cfg, valid=names)
    t = names.index(cfg["target"])
    group_attrs = group_attributes(cfg)
    gis = [names.index(a) for a in group_attrs]
    # one attribute: its 0/1 value is the group id, as always; several: their product
    # (pwprune.data.groups, first attribute slowest), every combination kept so ids never depend on the split
    domains, value_lists = [[0, 1]] * len(gis), [value_names(a) for a in group_attrs]
    rng = np.random.default_rng(cfg["seed"])
    size = cfg["image_size"]
    out = {}
    for ours, ds in datasets.items():
        y = ds.attr[:, t].numpy().astype(np.int64)
        g, group_names, _ = combine([ds.attr[:, gi].numpy() for gi in gis], domains, value_lists, empty="keep")
        idx = np.arange(len(y))
        if ours == "train" and cfg["rebalance"]:
            idx = rebalance(y, g, float(cfg["rebalance"].get("alpha", 1)), float(cfg["rebalance"].get("beta", 1)),
                            rng, log)
        if len(idx) == 0:
            raise DatasetError(f"CelebA split {SPLITS[ours]!r} is empty in {folder}/list_eval_partition.txt; "
                               f"the partition file is incomplete. " + how_to_get(raw_root))
        x = np.empty((len(idx), 3, size, size), np.uint8)
        for j, i in enumerate(idx):
            path = os.path.join(folder, "img_align_celeba", ds.filename[i])
            try:
                x[j] = square_resize(ds[int(i)][0], size)  # decode through torchvision's loader
            except Exception as e:
                raise DatasetError(f"CelebA image {path} is missing or does not decode ({type(e).__name__}: {e}). "
                                   + how_to_get(raw_root)) from None
            if (j + 1) % 20000 == 0:
                log(f"celeba {ours}: {j + 1}/{len(idx)} images")
        out[ours] = (x, y[idx], g[idx])
        log(f"celeba {ours}: {len(idx)} images, {cfg['target']} rate {y[idx].mean():.3f}, groups "
            + ", ".join(f"{name}={int((g[idx] == k).sum())}" for k, name in enumerate(group_names)))
    return {"splits": out, "class_names": value_names(cfg["target"]), "group_names": group_names}
