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
    if not isinstance(cfg["image_size"], int) or cfg["image_size"] < 8:
        raise DatasetError(f"digits: image_size {cfg['image_size']!r} is invalid; must be an int >= 8")


def check_files(root, cfg=None):
    """Nothing to check: the images ship inside scikit-learn."""


def extra_splits(cfg: dict) -> list:
    return []


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
        x = render(v_all[idx], g.astype(bool), cfg["style"], cfg["noise"], rng, cfg["texture_strength"])
        splits[name] = (x, labels[idx], g)
        log(f"digits {name}: {len(idx)} images, minority share {g.mean():.3f}")
    return {"splits": splits, "class_names": [str(c) for c in range(10)], "group_names": list(GROUP_NAMES)}
