"""The embedded default dataset: scikit-learn's handwritten digits with a *visual* protected group.

Why: the pipeline must run end to end on a fresh machine with nothing downloaded, and still show
the effect the paper studies (pruning hurts an under-represented group more). scikit-learn ships
1,797 real 8x8 digit scans (values 0..16) inside the package, so they are always there.

How a sample is made:
  1. The 8x8 scan is scaled to [0, 1] and upscaled bilinearly to `image_size` (default 16).
  2. The sample is assigned a group. Split first (seeded, stratified by label) into
     train / val / test; then within each split and each label, round(share * n) samples are
     drawn (seeded, without replacement) into the *minority* group: share = `minority_share`
     (default 0.08) in train, `eval_minority_share` (default 0.5) in val and test. So the
     minority is rare in training but balanced where it is measured.
  3. It is rendered in RGB as  pixel = background * (1 - v) + ink * v  (v = stroke intensity):
       majority: amber ink (1.0, 0.82, 0.30) on a near-black background.
       minority: the styles in `style` (any of "invert", "recolor", "texture"; default all):
         recolor - the palette moves to other channels: azure ink (0.20, 0.55, 1.0) on a dark
                   plum background, so the red/green detectors of the majority do not fire;
         invert  - polarity flips (light background, dark strokes), so the majority's
                   edge/stroke filters respond with the wrong sign;
         texture - the background carries diagonal stripes (random phase and direction, period
                   image_size/4, depth `texture_strength`, default 0.3), high-frequency
                   content the model must learn to ignore.
     Every image gets a random brightness factor in [0.85, 1] and Gaussian noise (`noise`, std in
     [0, 1] units) so the styles are not pixel-perfect constants.
  4. Optionally (`rotation`, `scale`, `shift`, `occlusion` > 0) every image of every split is a
     random distortion of its scan: rotation, zoom and shift, then a blanked square on a share
     `occlusion_rate` of the images. The training split then holds `train_copies` distinct
     renderings of each scan (val one, test `test_copies`), so the training set is larger than a small
     model memorises in a few epochs, and the occluded images are genuinely ambiguous. The dense
     model then stays unsure of the rare style on its own training images, as on CelebA's rare
     cell, which is what the PW loss acts through (the default experiment; docs/datasets.md).
     All distortions 0 (the defaults) give the scans as they are, byte for byte as before.
The minority therefore needs its own filters, which a small share of the training loss supports:
the filters a FLOP-targeted pruner removes first (small/low-importance on average). The knobs
(`minority_share`, `style`, `image_size`, `noise`, split fractions, `seed`) let the effect size be
calibrated. Digits must not be flipped (a flipped 2 is not a 2), so the workflow keeps
augmentation off for this dataset.
"""

from __future__ import annotations

import numpy as np

from .common import DatasetError, check_fraction, pick_per_label, stratified_split

STYLES = ("invert", "recolor", "texture")
GROUP_NAMES = ["majority", "minority"]
DEFAULTS = {
    "image_size": 16,
    "val_fraction": 0.15,
    "test_fraction": 0.3,
    "minority_share": 0.08,
    "eval_minority_share": 0.5,
    "style": list(STYLES),
    "noise": 0.04,
    "texture_strength": 0.3,
    # distortions, drawn anew for every image of every split (all 0 = the scans as they are)
    "rotation": 0.0,        # max |angle| in degrees
    "scale": 0.0,           # zoom drawn from [1 - scale, 1 + scale]
    "shift": 0.0,           # max translation, as a fraction of image_size
    "occlusion": 0.0,       # side of a blanked square, as a fraction of image_size
    "occlusion_rate": 0.5,  # share of images that get the square (when occlusion > 0)
    "train_copies": 1,      # distinct renderings of each training scan
    "test_copies": 1,       # distinct renderings of each test scan (a more precise test accuracy)
}

MAJORITY = {"bg": (0.04, 0.04, 0.06), "ink": (1.0, 0.82, 0.30)}
RECOLOR = {"bg": (0.14, 0.02, 0.12), "ink": (0.20, 0.55, 1.0)}


def validate(cfg: dict):
    check_fraction(cfg, "minority_share", 0.0, 1.0)
    check_fraction(cfg, "eval_minority_share", 0.0, 1.0)
    check_fraction(cfg, "test_fraction", 0.0, 1.0)
    check_fraction(cfg, "noise", 0.0, 1.0)
    check_fraction(cfg, "texture_strength", 0.0, 1.0, inclusive_high=True)
    if cfg["val_fraction"] + cfg["test_fraction"] >= 0.9:
        raise DatasetError(f"digits: val_fraction + test_fraction = "
                           f"{cfg['val_fraction'] + cfg['test_fraction']} leaves too little to train on; keep it < 0.9")
    style = cfg["style"]
    if isinstance(style, str):
        style = [s for s in style.replace("+", ",").split(",") if s.strip()]
    style = [s.strip() for s in style]
    bad = [s for s in style if s not in STYLES]
    if bad or not style:
        raise DatasetError(f"digits: style {cfg['style']!r} is invalid ({', '.join(map(repr, bad)) or 'empty'}); "
                           f"choose one or more of: {', '.join(STYLES)}")
    cfg["style"] = style
    check_fraction(cfg, "scale", 0.0, 1.0)
    check_fraction(cfg, "shift", 0.0, 0.5)
    check_fraction(cfg, "occlusion", 0.0, 1.0)
    check_fraction(cfg, "occlusion_rate", 0.0, 1.0, inclusive_high=True)
    check_fraction(cfg, "rotation", 0.0, 180.0, inclusive_high=True)
    for key in ("train_copies", "test_copies"):
        copies = cfg[key]
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise DatasetError(f"digits: {key} {copies!r} is invalid; must be an int >= 1")
        if copies > 1 and not _distorted(cfg):
            raise DatasetError(f"digits: {key} > 1 needs a distortion (rotation, scale, shift or "
                               "occlusion > 0); undistorted copies would only repeat the same scans")
    if not isinstance(cfg["image_size"], int) or cfg["image_size"] < 8:
        raise DatasetError(f"digits: image_size {cfg['image_size']!r} is invalid; must be an int >= 8")


def check_files(root, cfg=None):
    """Nothing to check: the images ship inside scikit-learn."""


def extra_splits(cfg: dict) -> list:
    return []


def _distorted(cfg) -> bool:
    return any(cfg[k] > 0 for k in ("rotation", "scale", "shift", "occlusion"))


def distort(v: np.ndarray, cfg: dict, rng) -> np.ndarray:
    """Stroke intensities (N, S, S) -> a random affine view of each (rotation, zoom, shift about
    the centre, bilinear, empty outside) and, for a share `occlusion_rate` of them, a blanked
    square of side `occlusion` x S at a random place. The occluded images are the genuinely
    ambiguous ones: part of a digit is gone, so even a perfect model cannot be sure of them."""
    from scipy import ndimage

    n, s, _ = v.shape
    c = np.full(2, (s - 1) / 2.0)
    out = np.empty_like(v)
    angles = np.deg2rad(rng.uniform(-cfg["rotation"], cfg["rotation"], n))
    zooms = rng.uniform(1 - cfg["scale"], 1 + cfg["scale"], n)
    shifts = rng.uniform(-cfg["shift"], cfg["shift"], (n, 2)) * s
    for i in range(n):
        rot = np.array([[np.cos(angles[i]), -np.sin(angles[i])], [np.sin(angles[i]), np.cos(angles[i])]])
        m = rot / zooms[i]  # output -> input coordinates
        out[i] = ndimage.affine_transform(v[i], m, offset=c - m @ c + shifts[i], order=1, mode="constant")
    k = int(round(cfg["occlusion"] * s))
    if k > 0:
        hit = np.flatnonzero(rng.random(n) < cfg["occlusion_rate"])
        corners = rng.integers(0, s - k + 1, (len(hit), 2))
        for i, (a, b) in zip(hit, corners):
            out[i, a:a + k, b:b + k] = 0.0
    return out.clip(0, 1).astype(np.float32)


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """(N, 8, 8) floats in [0, 1] -> (N, size, size), bilinear."""
    from PIL import Image

    if size == images.shape[-1]:
        return images.astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(im.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))
                     for im in images]).clip(0, 1).astype(np.float32)


def render(v: np.ndarray, minority: np.ndarray, style, noise: float, rng, texture_strength=0.3) -> np.ndarray:
    """Stroke intensities (N, H, W) in [0, 1] + group mask -> RGB uint8 (N, 3, H, W)."""
    n, h, w = v.shape
    bg = np.tile(np.array(MAJORITY["bg"], np.float32), (n, 1))
    ink = np.tile(np.array(MAJORITY["ink"], np.float32), (n, 1))
    if "recolor" in style:
        bg[minority], ink[minority] = RECOLOR["bg"], RECOLOR["ink"]
    if "invert" in style:
        bg[minority], ink[minority] = ink[minority].copy(), bg[minority].copy()
    bright = rng.uniform(0.85, 1.0, size=(n, 1)).astype(np.float32)
    bg, ink = bg * bright, ink * bright
    # (N, 3, H, W) background, optionally striped for the minority
    back = np.broadcast_to(bg[:, :, None, None], (n, 3, h, w)).copy()
    if "texture" in style and minority.any():
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = max(h / 4.0, 2.0)
        m = np.flatnonzero(minority)
        direction = rng.choice([-1.0, 1.0], size=len(m)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, size=len(m)).astype(np.float32)
        arg = (xx[None] + direction[:, None, None] * yy[None]) * (2 * np.pi / period) + phase[:, None, None]
        stripes = 0.5 + 0.5 * np.sin(arg)  # (M, H, W) in [0, 1]
        back[m] *= (1.0 - texture_strength * stripes)[:, None]
    vv = v[:, None]
    img = back * (1.0 - vv) + ink[:, :, None, None] * vv
    img = img + rng.normal(0.0, noise, size=img.shape).astype(np.float32) if noise > 0 else img
    return (img.clip(0, 1) * 255 + 0.5).astype(np.uint8)


def build(cfg: dict, raw_root, log=print) -> dict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (1797, 8, 8), 0..16 -> [0, 1]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(cfg["seed"])
    parts = stratified_split(labels, {"test": cfg["test_fraction"], "val": cfg["val_fraction"], "train": 1.0}, rng)
    v_all = upscale(images, cfg["image_size"])
    splits = {}
    for name in ("train", "val", "test"):
        idx = parts[name]
        share = cfg["minority_share"] if name == "train" else cfg["eval_minority_share"]
        g = pick_per_label(labels[idx], share, rng).astype(np.int64)
        v, y = v_all[idx], labels[idx]
        if _distorted(cfg):
            copies = {"train": cfg["train_copies"], "test": cfg["test_copies"]}.get(name, 1)
            # each copy of a scan is its own distortion of it, in its own rendering; a scan keeps
            # its group in every copy. The test split is drawn last, so its copies leave the
            # training and validation images (and so the dense models) as they are.
            v = np.concatenate([distort(v, cfg, rng) for _ in range(copies)])
            y, g = np.tile(y, copies), np.tile(g, copies)
        x = render(v, g.astype(bool), cfg["style"], cfg["noise"], rng, cfg["texture_strength"])
        splits[name] = (x, y, g)
        log(f"digits {name}: {len(y)} images from {len(idx)} scans, minority share {g.mean():.3f}")
    return {"splits": splits, "class_names": [str(c) for c in range(10)], "group_names": list(GROUP_NAMES)}
