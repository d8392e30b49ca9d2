"""Datasets with a protected group attribute, in one prepared on-disk form.

Every dataset yields, per sample, an RGB image, a label and a group (the attribute whose
fairness is measured), in named splits: train, val, test (+ extra evaluation splits such as
test_shortcut). `prepare` decodes the raw data once into three `.npy` files per split,
`out_dir/<split>.x.npy` (uint8 (N, C, H, W)), `<split>.y.npy` and `<split>.g.npy` (int64 (N,)),
+ `meta.json`, so jobs do not repeat slow decoding. Jobs open x memory-mapped read-only: the
OS page cache then holds one copy of a split however many jobs on a node read it (CelebA's train
split at 128 px is 8 GB; loaded whole, 8 jobs would hold 64 GB).

Kinds (see docs/datasets.md and each module's docstring):
  digits          embedded default, built from scikit-learn's digits (no download)
  cifar10         torchvision CIFAR10 layout; variants standard | imbalanced | shortcut
  celeba          torchvision CelebA layout; target/group attributes, optional rebalance
  fitzpatrick17k  public CSV + images/<md5hash>.jpg; train on skin types 1-2
  images_csv      your images + a CSV: path, label and group columns (intersectional), split

This module imports neither torch nor torchvision (the Snakefile calls `split_names` at
start-up); `SplitDataset` loads torch on first use.
"""

from __future__ import annotations

import copy
import importlib
import json
import os

import numpy as np

from pwprune.fileio import atomic_open
from pwprune.names import DATASET_KINDS

from .common import DatasetError
from .groups import cell_counts

# keys every kind accepts; the rest come from the kind's DEFAULTS
COMMON_DEFAULTS = {"name": None, "root": None, "seed": 0}
BASE_SPLITS = ["train", "val", "test"]
META_FILE = "meta.json"
ARRAYS = ("x", "y", "g")  # one file per array: out_dir/<split>.<array>.npy
RERUN = "run the prepare step again"


def array_path(out_dir, split, array):
    """out_dir/<split>.<array>.npy: the prepared on-disk form of one array of one split."""
    return os.path.join(out_dir, f"{split}.{array}.npy")


__all__ = [
    "DATASET_KINDS",
    "DatasetError",
    "Prepared",
    "Split",
    "SplitDataset",
    "array_path",
    "load_prepared",
    "prepare",
    "resolve_config",
    "split_names",
    "write_prepared",
]


def _kind_module(kind):
    return importlib.import_module(f"pwprune.data.{kind}")


def check_raw(dataset_cfg: dict) -> None:
    """Are the raw files there? A presence check without decoding, cheap enough for the
    workflow's start-up; raises DatasetError naming the expected path and how to get the data."""
    cfg = resolve_config(dict(dataset_cfg))
    _kind_module(cfg["kind"]).check_files(cfg["root"], cfg)


def resolve_config(dataset_cfg: dict) -> dict:
    """The dataset config with every default filled in, validated. Unknown keys, kinds or values
    raise DatasetError naming them and listing the valid ones."""
    if not isinstance(dataset_cfg, dict):
        raise DatasetError(f"dataset config must be a mapping with a 'kind' key; got {dataset_cfg!r}")
    kind = dataset_cfg.get("kind")
    if kind not in DATASET_KINDS:
        raise DatasetError(f"dataset kind {kind!r} is unknown; valid kinds: {', '.join(DATASET_KINDS)}")
    mod = _kind_module(kind)
    valid = ["kind", *COMMON_DEFAULTS, *mod.DEFAULTS]
    unknown = [k for k in dataset_cfg if k not in valid]
    if unknown:
        raise DatasetError(
            f"unknown dataset key(s) {', '.join(map(repr, unknown))} for kind {kind!r}; valid keys: {', '.join(valid)}"
        )
    cfg = {"kind": kind, **copy.deepcopy(COMMON_DEFAULTS), **copy.deepcopy(mod.DEFAULTS), **copy.deepcopy(dataset_cfg)}
    cfg["name"] = cfg["name"] or (kind if cfg.get("variant", "standard") == "standard" else f"{kind}_{cfg['variant']}")
    cfg["root"] = cfg["root"] or f"data/raw/{kind}"
    if not isinstance(cfg["seed"], int) or isinstance(cfg["seed"], bool):
        raise DatasetError(f"dataset key 'seed' = {cfg['seed']!r} is invalid; must be an int")
    vf = cfg["val_fraction"]
    if vf is not None and not (isinstance(vf, (int, float)) and not isinstance(vf, bool) and 0 < vf < 1):
        raise DatasetError(f"dataset key 'val_fraction' = {vf!r} is invalid; must be a number in (0, 1)")
    mod.validate(cfg)
    return cfg


def split_names(dataset_cfg: dict) -> list:
    """The splits a prepared dataset will have, from the config alone (no data is read)."""
    cfg = resolve_config(dataset_cfg)
    return BASE_SPLITS + _kind_module(cfg["kind"]).extra_splits(cfg)


def _channel_stats(x: np.ndarray):
    """Per-channel mean/std of uint8 images in [0, 1] units, in chunks (CelebA's train split is
    GBs; a float copy of all of it at once would not fit comfortably)."""
    c = x.shape[1]
    s, s2, n = np.zeros(c), np.zeros(c), 0
    for i in range(0, len(x), 4096):
        chunk = x[i : i + 4096].astype(np.float64) / 255.0
        s += chunk.sum(axis=(0, 2, 3))
        s2 += (chunk**2).sum(axis=(0, 2, 3))
        n += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return [float(m) for m in mean], [float(max(v, 1e-3)) for v in std]


def _atomic_write(path, write):
    with atomic_open(path) as f:
        write(f)


def prepare(dataset_cfg: dict, raw_root=None, out_dir=None, log=print) -> dict:
    """Decode the raw dataset into out_dir/<split>.{x,y,g}.npy + out_dir/meta.json; returns the
    meta. `raw_root` is this dataset's raw folder (default: the config's `root`). Everything is
    read and checked in memory first, so missing/broken data raises DatasetError before any file
    is written; then every array is written atomically and meta.json last (an old one removed
    first), so a half-written prepare is never accepted by `load_prepared`."""
    if out_dir is None:
        raise DatasetError("prepare: out_dir is required")
    cfg = resolve_config(dataset_cfg)
    raw_root = str(raw_root if raw_root is not None else cfg["root"])
    mod = _kind_module(cfg["kind"])
    if cfg["kind"] == "celeba" and cfg["val_fraction"] is not None:
        log("celeba: val_fraction is ignored; the official partition fixes val and test")
    built = mod.build(cfg, raw_root, log)
    names = split_names(cfg)
    splits = built["splits"]
    assert sorted(splits) == sorted(names), (sorted(splits), names)
    if len(splits["train"][1]) == 0:
        raise DatasetError(
            f"{cfg['kind']}: the train split is empty (raw data under {raw_root}); check the data and the config"
        )
    x_train = splits["train"][0]
    mean, std = _channel_stats(x_train)
    n_groups = len(built["group_names"])
    meta = {
        "name": cfg["name"],
        "kind": cfg["kind"],
        "num_classes": len(built["class_names"]),
        "class_names": built["class_names"],
        "group_names": built["group_names"],
        # the groups are the classes (CIFAR-10): metrics then give each group its class's
        # one-vs-rest AUROC over the whole split (pwprune.metrics.group_metrics)
        "groups_are_classes": bool(
            built["group_names"] == built["class_names"] and all(np.array_equal(y, g) for _, y, g in splits.values())
        ),
        "in_channels": int(x_train.shape[1]),
        "input_size": int(x_train.shape[-1]),
        "mean": mean,
        "std": std,
        "splits": names,
        "eval_splits": [n for n in names if n not in ("train", "val")],
        "sizes": {n: int(len(splits[n][1])) for n in names},
        "group_counts": {n: [int((splits[n][2] == k).sum()) for k in range(n_groups)] for n in names},
        # per split, [label][group]: how many samples each label x group cell holds
        "cell_counts": {n: cell_counts(splits[n][1], splits[n][2], len(built["class_names"]), n_groups) for n in names},
        "config": cfg,
        **built.get("meta", {}),  # a kind's own additions (images_csv: its group columns)
    }
    write_prepared(out_dir, splits, meta)
    log(f"prepared {cfg['name']} in {out_dir}: " + ", ".join(f"{n}={meta['sizes'][n]}" for n in names))
    return meta


def write_prepared(out_dir, splits: dict, meta: dict) -> None:
    """Write splits {name: (x, y, g)} in the prepared on-disk form: every array through
    atomic_open, meta.json last; an existing meta.json is removed first, so a write killed at
    any point leaves a folder that `load_prepared` refuses. `prepare` writes with it; so can a
    benchmark or a test with arrays of its own (meta as `prepare` builds it)."""
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, META_FILE)
    if os.path.exists(meta_path):  # an old meta must not vouch for new, half-written splits
        os.remove(meta_path)
    for n in meta["splits"]:
        old = os.path.join(out_dir, f"{n}.npz")  # the form before memory-mapping: not read any more
        if os.path.exists(old):
            os.remove(old)
        x, y, g = splits[n]
        arrays = {"x": np.ascontiguousarray(x, np.uint8), "y": np.asarray(y, np.int64), "g": np.asarray(g, np.int64)}
        for a in ARRAYS:
            _atomic_write(array_path(out_dir, n, a), lambda f, v=arrays[a]: np.save(f, v, allow_pickle=False))
    _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))


class Split:
    """One split: x uint8 (N, C, H, W), y int64 (N,), g int64 (N,). Loaded by `load_prepared`,
    x is a read-only np.memmap (pages are read on access and shared between processes); y and
    g are in memory."""

    def __init__(self, name, x, y, g):
        self.name, self.x, self.y, self.g = name, x, y, g

    def __len__(self):
        return len(self.y)

    def __repr__(self):
        return f"Split({self.name!r}, n={len(self)}, shape={tuple(self.x.shape)})"


def _refuse(path, why):
    return DatasetError(f"prepared split file {path} {why}; {RERUN}")


def _load_x(path, n):
    """x memory-mapped read-only, checked against the split's size in meta.json."""
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # missing, a truncated header, or fewer bytes than the header promises
        raise _refuse(path, f"is missing, truncated or unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(x, np.ndarray):
        raise _refuse(path, f"is not a .npy array ({type(x).__name__})")
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) != n:
        raise _refuse(path, f"holds {x.dtype} {tuple(x.shape)}; expected uint8 (N={n}, C, H, W) (meta.json sizes)")
    return x


def _load_labels(path, n):
    """y or g, read into memory as int64 (N,)."""
    try:
        v = np.load(path, allow_pickle=False)
    except Exception as e:
        raise _refuse(path, f"is missing, truncated or unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "iu" or v.shape != (n,):
        raise _refuse(
            path,
            f"holds {getattr(v, 'dtype', type(v).__name__)} {getattr(v, 'shape', '')}; "
            f"expected int64 ({n},) (meta.json sizes)",
        )
    return v.astype(np.int64, copy=False)


class _Splits(dict):
    """split name -> Split, read from disk on first access (a job that only evaluates on test
    should not open a multi-GB train split)."""

    def __init__(self, out_dir, names, sizes):
        super().__init__()
        self.out_dir, self.names, self.sizes = out_dir, list(names), {n: int(sizes[n]) for n in names}

    def __missing__(self, name):
        if name not in self.names:
            raise KeyError(f"split {name!r} is not in {self.out_dir}; splits: {', '.join(self.names)}")
        n = self.sizes[name]
        x = _load_x(array_path(self.out_dir, name, "x"), n)
        y, g = (_load_labels(array_path(self.out_dir, name, a), n) for a in ("y", "g"))
        split = self[name] = Split(name, x, y, g)
        return split

    def __contains__(self, name):
        return name in self.names

    def keys(self):
        return list(self.names)

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)


class Prepared:
    def __init__(self, out_dir, meta):
        self.out_dir, self.meta = out_dir, meta
        self.splits = _Splits(out_dir, meta["splits"], meta["sizes"])

    def __repr__(self):
        return f"Prepared({self.meta['name']!r}, splits={self.meta['splits']})"


def load_prepared(out_dir) -> Prepared:
    """Open a prepared dataset. Only a directory whose meta.json exists (written last by
    `prepare`) in the current on-disk form is accepted; splits are opened lazily, each checked
    against meta.json (a half-written or damaged split raises DatasetError naming the file)."""
    path = os.path.join(out_dir, META_FILE)
    if not os.path.isfile(path):
        raise DatasetError(
            f"no prepared dataset in {out_dir} ({path} is missing: the prepare step has not "
            "run or did not finish); run the prepare step"
        )
    try:
        with open(path) as f:
            meta = json.load(f)
        prepared = Prepared(out_dir, meta)  # needs every split's size, checked against its files on opening
    except Exception as e:
        raise DatasetError(f"{path} is unreadable or incomplete ({type(e).__name__}: {e}); {RERUN}") from None
    # the form before memory-mapped splits: one <split>.npz each, read whole into every job
    old = [
        n
        for n in meta["splits"]
        if os.path.exists(os.path.join(out_dir, f"{n}.npz")) and not os.path.exists(array_path(out_dir, n, "x"))
    ]
    if old:
        raise DatasetError(
            f"{out_dir} holds {', '.join(f'{n}.npz' for n in old)}: prepared by an older pwprune "
            f"(splits are now <split>.x.npy, .y.npy, .g.npy, memory-mapped); {RERUN}"
        )
    return prepared


def __getattr__(name):
    if name == "SplitDataset":  # torch-backed: load on first use only
        from .dataset import SplitDataset

        return SplitDataset
    raise AttributeError(f"module 'pwprune.data' has no attribute {name!r}")
