"""CIFAR-10 with groups = classes, in the paper's three variants.

Read through `torchvision.datasets.CIFAR10(root, train=..., download=False)` from the
`root/cifar-10-batches-py/` layout. torchvision checks the md5 of every batch file against the
official ones, so only the real files load; a mismatch is reported as corrupted data.

Splits: `val` (val_fraction, stratified by class, seeded) is carved from the official training
set *after* the variant's change to the training pool, so validation follows the training
distribution; `test` is the official test set, untouched.
  standard   - as shipped.
  imbalanced - keep only `keep_fraction` (0.2) of the training images of `imbalanced_classes`
               (cat, dog), chosen without replacement, seeded.
  imbalanced_authors - the authors' code as written (datasets/helpers.py:114-125), not as meant:
               per class (in the order of their Python set), int((1 - keep_fraction) * n) indices
               drawn *with* replacement; `sum` of the per-class arrays adds them elementwise, and
               the images whose index equals one of those sums are dropped. With cat and dog that
               drops ~3.9 % of every class, not 80 % of cats and dogs. Seeded by the dataset seed,
               whose generator makes these draws first: `seed: 123456789` draws exactly the authors'
               indices (helpers.py:119).
  shortcut   - a `square_size` px (4, at native 32 px) yellow square pasted at a random spot on
               `shortcut_rate` (98%) of the `shortcut_class` (dog) images of train and of val, and on
               `shortcut_other_rate` (2%) of every other class's images (exact per-class counts,
               round(rate * n)). Extra evaluation split `test_shortcut`: the test set with a square
               on every image; `test` stays clean.
Images are resized (bilinear) to `image_size` after the square is pasted.
"""

from __future__ import annotations

import os

import numpy as np

from .common import DatasetError, check_fraction, pick_per_label, resize_batch, stratified_split

VARIANTS = ("standard", "imbalanced", "imbalanced_authors", "shortcut")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
DEFAULTS = {
    "image_size": 32,
    "val_fraction": 0.1,
    "variant": "standard",
    "imbalanced_classes": ["cat", "dog"],
    "keep_fraction": 0.2,
    "shortcut_class": "dog",
    "shortcut_rate": 0.98,
    "shortcut_other_rate": 0.02,
    "square_size": 4,
    "square_color": [255, 255, 0],
}


def validate(cfg: dict):
    if cfg["variant"] not in VARIANTS:
        raise DatasetError(f"cifar10: variant {cfg['variant']!r} is invalid; valid: {', '.join(VARIANTS)}")
    for c in list(cfg["imbalanced_classes"]) + [cfg["shortcut_class"]]:
        if c not in CLASSES:
            raise DatasetError(f"cifar10: class {c!r} is unknown; valid: {', '.join(CLASSES)}")
    check_fraction(cfg, "keep_fraction", 0.0, 1.0, inclusive_high=True)
    check_fraction(cfg, "shortcut_rate", 0.0, 1.0, inclusive_high=True)
    check_fraction(cfg, "shortcut_other_rate", 0.0, 1.0, inclusive_high=True)
    if not (isinstance(cfg["square_size"], int) and 1 <= cfg["square_size"] <= 16):
        raise DatasetError(f"cifar10: square_size {cfg['square_size']!r} is invalid; must be an int in 1..16")
    if not isinstance(cfg["image_size"], int) or cfg["image_size"] < 8:
        raise DatasetError(f"cifar10: image_size {cfg['image_size']!r} is invalid; must be an int >= 8")


def extra_splits(cfg: dict) -> list:
    return ["test_shortcut"] if cfg.get("variant") == "shortcut" else []


def how_to_get(root) -> str:
    return (f"Get it with `dvc pull` (if this project's remote holds it), or download it once with torchvision: "
            f"python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\" "
            f"(or fetch cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
            f"into {root})")


def check_files(root, cfg=None):
    folder = os.path.join(root, "cifar-10-batches-py")
    missing = [os.path.join(folder, f) for f in FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise DatasetError(f"CIFAR-10 is missing or incomplete: expected {folder}/ with {', '.join(FILES)}; "
                           f"missing: {', '.join(missing)}. " + how_to_get(root))


def paste_squares(x: np.ndarray, mask: np.ndarray, size: int, color, rng) -> np.ndarray:
    """x (N, 3, H, W) uint8; paste a size x size square of `color` at a uniform random position
    (fully inside the image) on every image where mask is True. Returns a copy."""
    x = x.copy()
    h, w = x.shape[-2:]
    for i in np.flatnonzero(mask):
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        x[i, :, top:top + size, left:left + size] = np.asarray(color, np.uint8)[:, None, None]
    return x


def _load(root, train: bool):
    from torchvision.datasets import CIFAR10  # lazy: torchvision costs ~1.5 s to import

    try:
        ds = CIFAR10(root, train=train, download=False)
    except RuntimeError as e:  # torchvision's md5 check failed
        raise DatasetError(f"CIFAR-10 in {os.path.join(root, 'cifar-10-batches-py')} failed torchvision's "
                           f"integrity check ({e}); the files are truncated or not the official ones. "
                           + how_to_get(root)) from None
    except Exception as e:  # unreadable pickle etc.
        raise DatasetError(f"CIFAR-10 in {os.path.join(root, 'cifar-10-batches-py')} could not be read "
                           f"({type(e).__name__}: {e}). " + how_to_get(root)) from None
    x = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # HWC -> CHW
    return x, np.asarray(ds.targets, np.int64), list(ds.classes)


def authors_imbalance(y, affected, keep_fraction, rng) -> np.ndarray:
    """Boolean keep-mask of the authors' imbalanced CIFAR-10 as their code runs (helpers.py:114-125):

        affected_idx = [[i for i ... if targets[i] == x] for x in {class indices}]   # a set
        discarded_idx = sum([rng.choice(x, int(0.8 * len(x))) for x in affected_idx])
        included_idx = [i for i in range(len(train_data)) if i not in set(discarded_idx)]

    rng.choice samples with replacement; `sum` of numpy arrays adds them elementwise (starting
    from 0), so with two classes each discarded "index" is the sum of a cat's and a dog's index;
    sums past the end match no image. Classes of unequal size cannot be added elementwise: the
    authors' code would fail there, and so does this (DatasetError)."""
    draws = []
    for c in {int(k) for k in affected}:  # a set, iterated as theirs (ints hash to themselves)
        idx = np.flatnonzero(np.asarray(y) == c)  # rng.choice draws from it as from their list
        draws.append(rng.choice(idx, int((1 - keep_fraction) * len(idx))))
    try:
        discarded = sum(draws) if draws else np.zeros(0, np.int64)
    except ValueError as e:
        raise DatasetError(f"cifar10 imbalanced_authors: the classes' draws have different lengths "
                           f"({', '.join(str(len(d)) for d in draws)}), which the authors' elementwise sum "
                           f"cannot add ({e}); use variant imbalanced") from None
    keep = np.ones(len(y), bool)
    discarded = np.unique(np.asarray(discarded, np.int64))
    keep[discarded[(discarded >= 0) & (discarded < len(y))]] = False
    return keep


def build(cfg: dict, raw_root, log=print) -> dict:
    check_files(raw_root)
    x_pool, y_pool, classes = _load(raw_root, train=True)
    x_test, y_test, _ = _load(raw_root, train=False)
    log(f"cifar10: read {len(y_pool)} training and {len(y_test)} test images from {raw_root}")
    rng = np.random.default_rng(cfg["seed"])
    variant = cfg["variant"]

    if variant == "imbalanced":
        keep = np.ones(len(y_pool), bool)
        for name in cfg["imbalanced_classes"]:
            idx = np.flatnonzero(y_pool == classes.index(name))
            k = int(round(cfg["keep_fraction"] * len(idx)))
            keep[idx] = False
            keep[rng.choice(idx, size=k, replace=False)] = True
        x_pool, y_pool = x_pool[keep], y_pool[keep]
        log(f"cifar10 imbalanced: kept {cfg['keep_fraction']} of {', '.join(cfg['imbalanced_classes'])}; "
            f"training pool now {len(y_pool)} images")
    elif variant == "imbalanced_authors":
        keep = authors_imbalance(y_pool, [classes.index(c) for c in cfg["imbalanced_classes"]],
                                 cfg["keep_fraction"], rng)
        dropped = np.bincount(y_pool[~keep], minlength=len(classes))
        x_pool, y_pool = x_pool[keep], y_pool[keep]
        log("cifar10 imbalanced_authors (the authors' code as written): dropped "
            + ", ".join(f"{c} {int(d)}" for c, d in zip(classes, dropped))
            + f"; training pool now {len(y_pool)} images")

    parts = stratified_split(y_pool, {"val": cfg["val_fraction"], "train": 1.0}, rng)
    splits = {name: (x_pool[parts[name]], y_pool[parts[name]]) for name in ("train", "val")}
    splits["test"] = (x_test, y_test)

    if variant == "shortcut":
        target = classes.index(cfg["shortcut_class"])
        for name in ("train", "val"):
            x, y = splits[name]
            mask = pick_per_label(y, cfg["shortcut_other_rate"], rng)
            is_target = y == target
            mask[is_target] = pick_per_label(y[is_target], cfg["shortcut_rate"], rng)
            splits[name] = (paste_squares(x, mask, cfg["square_size"], cfg["square_color"], rng), y)
            log(f"cifar10 shortcut {name}: square on {mask[is_target].mean():.3f} of {cfg['shortcut_class']}, "
                f"{mask[~is_target].mean():.3f} of others")
        splits["test_shortcut"] = (paste_squares(x_test, np.ones(len(y_test), bool), cfg["square_size"],
                                                 cfg["square_color"], rng), y_test)

    out = {}
    for name, (x, y) in splits.items():
        out[name] = (resize_batch(x, cfg["image_size"]), y, y.copy())  # groups = classes
    return {"splits": out, "class_names": classes, "group_names": list(classes)}
