"""Helpers shared by the dataset builders: the error type, seeded stratified splits and image
resizing. numpy + PIL only, so building the default dataset never imports torch/torchvision."""

from __future__ import annotations

import numpy as np


class DatasetError(ValueError):
    """Raw data absent/incomplete/broken, or a bad dataset config. The message names the path or
    key and says what would be valid or how to get the data."""


def stratified_split(labels, fractions: dict, rng, at_least_one=False) -> dict:
    """Split indices 0..N-1 into named parts with (about) the given fractions *within each label*,
    so every class keeps its share in every part. The last name takes the remainder, so no sample
    is lost to rounding. at_least_one: a label with at least len(fractions) samples gets at least
    one in every part. Returns name -> sorted int64 index array."""
    labels = np.asarray(labels)
    names = list(fractions)
    parts = {n: [] for n in names}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for j, n in enumerate(names[:-1]):
            k = int(round(fractions[n] * len(idx)))
            if at_least_one and len(idx) >= len(names):  # leave at least one for each later part
                k = min(max(k, 1), len(idx) - start - (len(names) - 1 - j))
            parts[n].append(idx[start:start + k])
            start += k
        parts[names[-1]].append(idx[start:])
    return {n: np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
            for n, p in parts.items()}


def pick_per_label(labels, share: float, rng) -> np.ndarray:
    """Boolean mask choosing round(share * n_c) samples of each label c, without replacement."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(share * len(idx)))
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask


def square_resize(img, size: int, mode: str = "RGB"):
    """PIL image -> (3, size, size) uint8 (mode "RGB") or (1, size, size) (mode "L"). Centre-crop
    to a square first so faces/lesions keep their aspect ratio (CelebA's aligned crops are
    178x218, Fitzpatrick images vary)."""
    from PIL import Image

    img = img.convert(mode)
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if s != size:
        img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).copy()


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, 3, size, size) uint8, bilinear; a no-op at the native size."""
    from PIL import Image

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = np.empty((len(x), 3, size, size), np.uint8)
    for i, im in enumerate(x):
        out[i] = np.asarray(Image.fromarray(im.transpose(1, 2, 0)).resize((size, size), Image.BILINEAR)
                            ).transpose(2, 0, 1)
    return out


def check_fraction(cfg: dict, key: str, low=0.0, high=1.0, inclusive_high=False):
    v = cfg[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v and (
        v <= high if inclusive_high else v < high)
    if not ok:
        hi = f"<= {high}" if inclusive_high else f"< {high}"
        raise DatasetError(f"dataset key {key!r} = {v!r} is invalid; must be a number >= {low} and {hi}")
