"""Fitzpatrick17k: 3-class skin-condition label (three_partition_label: non-neoplastic / benign /
malignant), groups = Fitzpatrick skin type pairs "1-2", "3-4", "5-6" (from fitzpatrick_scale;
rows with -1 = unlabelled are dropped). Trained on skin types 1-2, evaluated on all three.

On disk (`root`): the public `fitzpatrick17k.csv` (github.com/mattgroh/fitzpatrick17k; columns
md5hash, fitzpatrick_scale, fitzpatrick_centaur, label, nine_partition_label,
three_partition_label, qc, url, url_alphanum) and `images/<md5hash>.jpg`.

Splits, `split: pwprune` (the default; seeded, stratified by label, and by group for 3-6): skin
types 1-2 -> `test_fraction` test, `val_fraction` val, the rest train; skin types 3-4 and 5-6 ->
`val_fraction` val, the rest test. So train holds 1-2 only, while val and test hold every group.
`split: authors` (datasets/helpers.py:155-192 of the authors' code, with their --validation off):
every 1-2 image is in train; of the 3-4 and of the 5-6 images, n // 4 (a seeded random draw per
group, not stratified, as their random_split) are val and the rest test, so val and test hold no
1-2 image (its group row is empty); val_fraction and test_fraction are not used.
Images are centre-cropped to a square and resized to `image_size`.

Images are fetched from the atlases' URLs by
    python -m pwprune.data.fitzpatrick17k download --csv <csv> --images <dir>
(resumable: a file already present that decodes is skipped; every new file is decoded before it
is kept). What `md5hash` hashes is not documented; it is not the md5 of the URL (checked on the
public CSV), and may be the md5 of the original file bytes, but the atlases may re-encode images.
So a file is accepted when it decodes as an image, and md5 agreement is only counted and logged.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import socket
import sys
import urllib.error
import urllib.request

import numpy as np

from pwprune.fileio import atomic_open

from .common import DatasetError, check_fraction, square_resize, stratified_split

CLASSES = ["non-neoplastic", "benign", "malignant"]
GROUPS = ["1-2", "3-4", "5-6"]
COLUMNS = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label", "nine_partition_label",
           "three_partition_label", "qc", "url", "url_alphanum"]
DEFAULTS = {
    "image_size": 64,
    "val_fraction": 0.1,
    "test_fraction": 0.2,
    "csv": "fitzpatrick17k.csv",
    "images": "images",
    "split": "pwprune",
}
SPLITS = ("pwprune", "authors")


def validate(cfg: dict):
    if cfg["split"] not in SPLITS:
        raise DatasetError(f"fitzpatrick17k: split {cfg['split']!r} is invalid; valid: {', '.join(SPLITS)}")
    check_fraction(cfg, "test_fraction", 0.0, 1.0)
    if cfg["val_fraction"] + cfg["test_fraction"] >= 0.9:
        raise DatasetError("fitzpatrick17k: val_fraction + test_fraction must be < 0.9")
    if not isinstance(cfg["image_size"], int) or cfg["image_size"] < 8:
        raise DatasetError(f"fitzpatrick17k: image_size {cfg['image_size']!r} is invalid; must be an int >= 8")


def extra_splits(cfg: dict) -> list:
    return []


def how_to_get(csv_path, image_dir) -> str:
    return (f"Get it with `dvc pull` (if this project's remote holds it), or: put the public CSV from "
            f"https://github.com/mattgroh/fitzpatrick17k at {csv_path}, then fetch the images with "
            f"`python -m pwprune.data.fitzpatrick17k download --csv {csv_path} --images {image_dir}` "
            f"(needs network; resumable)")


def check_files(root, cfg):
    """Presence only (the CSV and the image folder), cheap enough for start-up; `build` checks
    every listed image."""
    csv_path = os.path.join(root, cfg["csv"])
    image_dir = os.path.join(root, cfg["images"])
    if not os.path.isfile(csv_path):
        raise DatasetError(f"Fitzpatrick17k CSV not found: expected {csv_path}. " + how_to_get(csv_path, image_dir))
    if not os.path.isdir(image_dir):
        raise DatasetError(f"Fitzpatrick17k images not found: expected the folder {image_dir}/ with <md5hash>.jpg "
                           f"files. " + how_to_get(csv_path, image_dir))


def read_csv(csv_path, image_dir=None):
    import pandas as pd

    if not os.path.isfile(csv_path):
        raise DatasetError(f"Fitzpatrick17k CSV not found: expected {csv_path}. "
                           + how_to_get(csv_path, image_dir or "<images dir>"))
    try:
        df = pd.read_csv(csv_path, dtype={"md5hash": str})
    except Exception as e:
        raise DatasetError(f"Fitzpatrick17k CSV {csv_path} could not be read ({type(e).__name__}: {e}). "
                           + how_to_get(csv_path, image_dir or "<images dir>")) from None
    missing = [c for c in ("md5hash", "fitzpatrick_scale", "three_partition_label", "url") if c not in df.columns]
    if missing:
        raise DatasetError(f"Fitzpatrick17k CSV {csv_path} lacks column(s) {', '.join(missing)}; expected the public "
                           f"CSV with columns {', '.join(COLUMNS)}. " + how_to_get(csv_path, image_dir or "<images dir>"))
    return df


def build(cfg: dict, raw_root, log=print) -> dict:
    csv_path = os.path.join(raw_root, cfg["csv"])
    image_dir = os.path.join(raw_root, cfg["images"])
    df = read_csv(csv_path, image_dir)
    df = df[df["fitzpatrick_scale"].isin([1, 2, 3, 4, 5, 6])].reset_index(drop=True)  # -1 = unlabelled
    bad = sorted(set(df["three_partition_label"]) - set(CLASSES))
    if bad:
        raise DatasetError(f"Fitzpatrick17k CSV {csv_path}: unknown three_partition_label value(s) {bad}; "
                           f"valid: {', '.join(CLASSES)}")
    if not os.path.isdir(image_dir):
        raise DatasetError(f"Fitzpatrick17k images not found: expected the folder {image_dir}/ with <md5hash>.jpg "
                           f"files. " + how_to_get(csv_path, image_dir))
    paths = [os.path.join(image_dir, f"{h}.jpg") for h in df["md5hash"]]
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise DatasetError(f"Fitzpatrick17k is incomplete: {len(absent)} of {len(paths)} images listed in {csv_path} "
                           f"are missing from {image_dir}/, e.g. {', '.join(absent[:3])}. "
                           + how_to_get(csv_path, image_dir))
    y = df["three_partition_label"].map(CLASSES.index).to_numpy(np.int64)
    g = ((df["fitzpatrick_scale"].to_numpy(np.int64) - 1) // 2).astype(np.int64)  # 1,2->0; 3,4->1; 5,6->2
    rng = np.random.default_rng(cfg["seed"])
    if cfg["split"] == "authors":
        parts = authors_split(g, rng)
        log("fitzpatrick17k: the authors' split: every 1-2 image in train, 1/4 of the 3-4 and of the 5-6 "
            "images val, 3/4 test (val_fraction and test_fraction unused)")
    else:
        light = np.flatnonzero(g == 0)
        dark = np.flatnonzero(g > 0)
        p1 = stratified_split(y[light], {"test": cfg["test_fraction"], "val": cfg["val_fraction"], "train": 1.0}, rng)
        # stratified by label x group, so 3-4 and 5-6 each keep their share in val and test
        p2 = stratified_split(y[dark] * len(GROUPS) + g[dark], {"val": cfg["val_fraction"], "test": 1.0}, rng)
        parts = {"train": light[p1["train"]],
                 "val": np.sort(np.concatenate([light[p1["val"]], dark[p2["val"]]])),
                 "test": np.sort(np.concatenate([light[p1["test"]], dark[p2["test"]]]))}
    # decode everything before returning, so a broken image stops preparation before any write
    from PIL import Image

    size = cfg["image_size"]
    out = {}
    for name, idx in parts.items():
        x = np.empty((len(idx), 3, size, size), np.uint8)
        for j, i in enumerate(idx):
            try:
                with Image.open(paths[i]) as im:
                    x[j] = square_resize(im, size)
            except Exception as e:
                raise DatasetError(f"Fitzpatrick17k image {paths[i]} does not decode ({type(e).__name__}: {e}); "
                                   f"delete it and re-run the download step to fetch it again. "
                                   + how_to_get(csv_path, image_dir)) from None
            if (j + 1) % 2000 == 0:
                log(f"fitzpatrick17k {name}: {j + 1}/{len(idx)} images")
        out[name] = (x, y[idx], g[idx])
        log(f"fitzpatrick17k {name}: {len(idx)} images, groups "
            + ", ".join(f"{GROUPS[k]}={int((g[idx] == k).sum())}" for k in range(3)))
    return {"splits": out, "class_names": list(CLASSES), "group_names": list(GROUPS)}


def authors_split(g, rng) -> dict:
    """The authors' split (helpers.py:155-157, 170-177, 189-192): train = every group-0 (1-2)
    sample; for group 1 (3-4), then group 2 (5-6), a seeded random n // 4 of its samples are val
    and the rest test. Returns name -> sorted index array."""
    val, test = [], []
    for k in (1, 2):
        idx = np.flatnonzero(g == k)
        idx = idx[rng.permutation(len(idx))]
        val.append(idx[:len(idx) // 4])
        test.append(idx[len(idx) // 4:])
    return {"train": np.flatnonzero(g == 0), "val": np.sort(np.concatenate(val)), "test": np.sort(np.concatenate(test))}


# ---------------------------------------------------------------------------------------------
# download


def _decodes(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:
        return False


def _network_error(e) -> bool:
    """True for 'cannot reach the host at all' (no network, DNS, refused, timeout), False for an
    answer from a server (HTTP 404 etc.), which is one dead link, not a missing network."""
    if isinstance(e, urllib.error.HTTPError):
        return False
    return isinstance(e, (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError))


def download_fitzpatrick17k(csv_path, image_dir, log=print, timeout=30.0, limit=None,
                            max_network_failures=5) -> dict:
    """Fetch every image listed in the CSV into image_dir/<md5hash>.jpg. Resumable: a file already
    present that decodes is skipped. A fetched file is kept only if it decodes (written to a temp
    file, then os.replace). Dead links are counted and reported; if the network is unreachable
    (the first `max_network_failures` attempts in a row fail without any server answering, or
    nothing at all could be fetched), raises DatasetError saying so.
    Returns {"downloaded", "skipped", "failed", "md5_match", "total"}."""
    df = read_csv(csv_path, image_dir)
    os.makedirs(image_dir, exist_ok=True)
    rows = list(zip(df["md5hash"], df["url"]))
    if limit is not None:
        rows = rows[:limit]
    stats = {"downloaded": 0, "skipped": 0, "failed": 0, "md5_match": 0, "total": len(rows)}
    failures, net_streak, net_failures, last_net_error = [], 0, 0, None
    for k, (h, url) in enumerate(rows, 1):
        path = os.path.join(image_dir, f"{h}.jpg")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if _decodes(f.read()):
                    stats["skipped"] += 1
                    continue
            log(f"fitzpatrick17k: {path} is present but does not decode; fetching it again")
        try:
            req = urllib.request.Request(str(url), headers={"User-Agent": "pwprune-fitzpatrick17k-download"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
        except Exception as e:
            if _network_error(e):
                net_streak += 1
                net_failures += 1
                last_net_error = e
                if net_streak >= max_network_failures and stats["downloaded"] == 0:
                    raise DatasetError(_no_network(url, e, csv_path)) from None
            failures.append((url, f"{type(e).__name__}: {e}"))
            stats["failed"] += 1
            continue
        net_streak = 0
        if not _decodes(data):
            failures.append((url, "not a decodable image"))
            stats["failed"] += 1
            continue
        stats["md5_match"] += hashlib.md5(data).hexdigest() == h
        with atomic_open(path) as f:
            f.write(data)
        stats["downloaded"] += 1
        if k % 100 == 0 or k == len(rows):
            log(f"fitzpatrick17k download: {k}/{len(rows)} rows, {stats['downloaded']} fetched, "
                f"{stats['skipped']} already present, {stats['failed']} failed")
    if stats["downloaded"] == 0 and net_failures and net_failures == stats["failed"]:
        raise DatasetError(_no_network(rows[-1][1], last_net_error, csv_path))
    for url, why in failures[:20]:
        log(f"fitzpatrick17k download: failed {url}: {why}")
    log(f"fitzpatrick17k download done: {stats['downloaded']} fetched ({stats['md5_match']} with md5 == md5hash), "
        f"{stats['skipped']} already present, {stats['failed']} failed, of {stats['total']}")
    return stats


def _no_network(url, e, csv_path) -> str:
    return (f"cannot download Fitzpatrick17k images: no network connection to the image hosts "
            f"(last attempt {url}: {type(e).__name__}: {e}). Run the download step on a machine with internet "
            f"access (it is resumable), or obtain the images with `dvc pull` or from the dataset authors "
            f"(https://github.com/mattgroh/fitzpatrick17k), for the rows of {csv_path}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pwprune.data.fitzpatrick17k")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="fetch the images listed in the CSV (resumable)")
    d.add_argument("--csv", required=True, help="path to fitzpatrick17k.csv")
    d.add_argument("--images", required=True, help="folder for <md5hash>.jpg files")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    d.add_argument("--limit", type=int, default=None, help="only the first N rows (for a quick check)")
    args = ap.parse_args(argv)
    try:
        stats = download_fitzpatrick17k(args.csv, args.images, log=lambda m: print(m, flush=True),
                                        timeout=args.timeout, limit=args.limit)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if stats["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
