"""Your own images, described by a CSV: one row per image with its path, its label and one or
more group columns (the sensitive attributes), optionally its split.

Config (`dataset:` of an experiment; paths relative to `root`, which defaults to
data/raw/images_csv; an absolute path is taken as it is):

    kind: images_csv
    root: data/raw/skin              # the raw folder
    csv: labels.csv                  # the table
    images: images                   # the image root; path_column is relative to it
    path_column: path
    label_column: diagnosis          # any values: strings or numbers
    group_columns: [sex, site]       # one name or a list (intersectional groups)
    split_column: null               # or a column whose values are train / val / test
    val_fraction: 0.1                # used without a split column
    test_fraction: 0.2               #   "
    image_size: 32                   # images are centre-cropped to a square and resized
    channels: 3                      # 3 (RGB) or 1 (greyscale)

Names and order. The class names are the label column's distinct values, sorted (numbers
numerically, anything else as text), shown as text; class id = position. Each group column's
values are sorted the same way; the groups are their product (pwprune.data.groups, first column
slowest), named "F & site_a" (a purely numeric value is shown as "column=value"). Combinations
that no row has are not groups (dropped).

Splits. With `split_column`, its values decide (train, val or test; anything else is refused
with the row). Without one: a seeded split stratified by label x group (the dataset `seed`):
every label x group cell is shuffled and cut into test, val and train by the fractions
(rounded), and a cell of at least 3 images gets at least one in each split.

Refused, with the row (CSV line, header = line 1), column or file and what would be valid:
at start-up (check_files, dry runs included) a missing CSV, image root or column; at
preparation an empty cell in a used column, a missing or undecodable image, a path that
escapes the image root (`..` or an absolute path elsewhere; checked on the normalised path,
so a symlink inside the root is followed), a label with a single value, and a group or a
label x group cell with no image in one of the splits. Every path is checked before any image
is decoded, and nothing is written before everything decoded.

meta.json gets, besides the common keys (`group_counts` per split, `cell_counts` per split as
[label][group]), `group_columns`; a test-split label x group cell under SMALL_CELL images is logged as a warning
with the width of its 95% Wilson interval at 50% accuracy (the widest; pwprune.data.groups.
wilson_width): a 5-image cell's accuracy is known to within ~66 points only.
"""

from __future__ import annotations

import os

import numpy as np

from .common import DatasetError, check_fraction, square_resize, stratified_split
from .groups import attribute_list, cell_counts, combine, wilson_width

DEFAULTS = {
    "csv": "labels.csv",
    "images": "images",
    "path_column": "path",
    "label_column": "label",
    "group_columns": None,
    "split_column": None,
    "val_fraction": 0.1,
    "test_fraction": 0.2,
    "image_size": 32,
    "channels": 3,
}
SPLITS = ("train", "val", "test")
SMALL_CELL = 30  # test cells below this many images get a warning
MODES = {3: "RGB", 1: "L"}


def group_columns(cfg: dict) -> list:
    try:
        return attribute_list(cfg["group_columns"], "images_csv: group_columns")
    except ValueError as e:
        raise DatasetError(f"{e} (e.g. sex or [sex, age_band]); it is required") from None


def used_columns(cfg: dict) -> list:
    cols = [cfg["path_column"], cfg["label_column"], *group_columns(cfg)]
    return cols + ([cfg["split_column"]] if cfg["split_column"] is not None else [])


def validate(cfg: dict):
    for key in ("csv", "images", "path_column", "label_column"):
        if not isinstance(cfg[key], str) or not cfg[key]:
            raise DatasetError(f"images_csv: {key} {cfg[key]!r} is invalid; must be a non-empty string")
    if cfg["split_column"] is not None and (not isinstance(cfg["split_column"], str) or not cfg["split_column"]):
        raise DatasetError(f"images_csv: split_column {cfg['split_column']!r} is invalid; a column name or null")
    cols = used_columns(cfg)
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise DatasetError(
            f"images_csv: column(s) {', '.join(map(repr, dup))} used for more than one role "
            "(path_column, label_column, group_columns, split_column); each role needs its own column"
        )
    if cfg["split_column"] is None:
        if cfg["val_fraction"] is None:
            raise DatasetError("images_csv: val_fraction is required without a split_column; a number in (0, 1)")
        check_fraction(cfg, "test_fraction", 0.0, 1.0)
        if cfg["val_fraction"] + cfg["test_fraction"] >= 0.9:
            raise DatasetError("images_csv: val_fraction + test_fraction must be < 0.9 (the rest is train)")
    if not isinstance(cfg["image_size"], int) or isinstance(cfg["image_size"], bool) or cfg["image_size"] < 8:
        raise DatasetError(f"images_csv: image_size {cfg['image_size']!r} is invalid; must be an int >= 8")
    if cfg["channels"] not in MODES or isinstance(cfg["channels"], bool):
        raise DatasetError(f"images_csv: channels {cfg['channels']!r} is invalid; valid: 3 (RGB), 1 (greyscale)")


def extra_splits(cfg: dict) -> list:
    return []


def _paths(root, cfg):
    return os.path.join(root, cfg["csv"]), os.path.join(root, cfg["images"])


def check_files(root, cfg):
    """The CSV, its header's columns and the image root, cheap enough for start-up (the header
    only is read); `build` checks every row and image."""
    csv_path, image_dir = _paths(root, cfg)
    if not os.path.isfile(csv_path):
        raise DatasetError(
            f"images_csv: the CSV {csv_path} does not exist; set dataset.csv (relative to dataset.root "
            f"{root!r}, or absolute) to your table with one row per image"
        )
    _check_columns(csv_path, _header(csv_path), cfg)
    if not os.path.isdir(image_dir):
        raise DatasetError(
            f"images_csv: the image root {image_dir}/ does not exist; set dataset.images (relative to "
            f"dataset.root {root!r}, or absolute) to the folder that the {cfg['path_column']!r} paths are relative to"
        )


def _header(csv_path) -> list:
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's BOM is not part of a name
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"images_csv: the CSV {csv_path} cannot be read ({type(e).__name__}: {e})") from None


def _check_columns(csv_path, header, cfg):
    roles = [("path_column", cfg["path_column"]), ("label_column", cfg["label_column"])]
    roles += [("group_columns", c) for c in group_columns(cfg)]
    if cfg["split_column"] is not None:
        roles.append(("split_column", cfg["split_column"]))
    missing = [f"{c!r} ({role})" for role, c in roles if c not in header]
    if missing:
        raise DatasetError(
            f"images_csv: the CSV {csv_path} has no column {', '.join(missing)}; its columns are: "
            f"{', '.join(map(repr, header)) or '(none: empty file)'}"
        )


def _line(i) -> str:
    return f"line {i + 2}"  # row i of the table; line 1 is the header


def _sorted_values(values) -> list:
    """Distinct values: numbers numerically, otherwise as text."""
    uniq = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in uniq):
        return sorted(uniq)
    return sorted(uniq, key=str)


def _value_name(column, value) -> str:
    text = str(value.item() if isinstance(value, np.generic) else value)
    try:
        float(text)
    except ValueError:
        return text
    return f"{column}={text}"


def resolve_image(image_dir, rel, where) -> str:
    """The image file of one row, which must lie inside image_dir: a relative path with `..`
    that climbs out, or an absolute path elsewhere, is refused (checked on the normalised path)."""
    root = os.path.abspath(image_dir)
    full = os.path.abspath(os.path.join(root, rel))
    if os.path.commonpath([root, full]) != root:
        raise DatasetError(
            f"images_csv: {where}: the image path {rel!r} escapes the image root {root}/ (resolves to {full}); "
            "paths must lie inside the image root: relative to it, without climbing out with '..'"
        )
    return full


def stratified_parts(y, g, n_groups, fractions: dict, rng) -> dict:
    """Seeded split of indices stratified by label x group: each cell is shuffled and cut by the
    fractions (rounded; the last part takes the rest), and a cell of at least len(fractions)
    samples gets at least one in every part. Returns name -> sorted int64 indices."""
    key = np.asarray(y, np.int64) * n_groups + np.asarray(g, np.int64)
    return stratified_split(key, fractions, rng, at_least_one=True)

def read_table(csv_path, cfg):
    import pandas as pd

    cols = used_columns(cfg)
    try:
        df = pd.read_csv(csv_path, dtype={cfg["path_column"]: str}, keep_default_na=True)
    except Exception as e:
        raise DatasetError(f"images_csv: the CSV {csv_path} cannot be parsed ({type(e).__name__}: {e})") from None
    _check_columns(csv_path, list(df.columns), cfg)
    if not len(df):
        raise DatasetError(f"images_csv: the CSV {csv_path} has no rows; it needs one row per image")
    for c in cols:
        empty = np.flatnonzero(df[c].isna().to_numpy())
        if len(empty):
            raise DatasetError(
                f"images_csv: {csv_path}, {_line(empty[0])}: column {c!r} is empty "
                f"({len(empty)} row(s) in all); every row needs a value there"
            )
    return df


def build(cfg: dict, raw_root, log=print) -> dict:
    csv_path, image_dir = _paths(raw_root, cfg)
    check_files(raw_root, cfg)
    df = read_table(csv_path, cfg)
    n = len(df)
    label_col, gcols = cfg["label_column"], group_columns(cfg)

    # labels: sorted distinct values, named as text
    label_values = _sorted_values(df[label_col].tolist())
    if len(label_values) < 2:
        raise DatasetError(
            f"images_csv: label column {label_col!r} of {csv_path} has the single value {label_values[0]!r} in "
            f"all {n} rows; a classifier needs at least two label values"
        )
    class_names = [str(v.item() if isinstance(v, np.generic) else v) for v in label_values]
    if len(set(class_names)) != len(class_names):
        raise DatasetError(f"images_csv: label column {label_col!r} holds values that print alike: {label_values}")
    y = np.empty(n, np.int64)
    lab = df[label_col].to_numpy()
    for i, v in enumerate(label_values):
        y[lab == v] = i

    # groups: the product of the group columns; combinations no row has are not groups
    domains = [_sorted_values(df[c].tolist()) for c in gcols]
    names = [[_value_name(c, v) for v in d] for c, d in zip(gcols, domains)]
    g, group_names, _ = combine([df[c].to_numpy() for c in gcols], domains, names, empty="drop")
    if "all" in group_names:  # the metrics' name for the whole split
        raise DatasetError(
            f"images_csv: group column {gcols[0]!r} of {csv_path} has the value 'all', which names the whole "
            "split in every metrics table; rename it in the CSV (e.g. 'all_ages')"
        )

    # splits
    if cfg["split_column"] is not None:
        sv = df[cfg["split_column"]].astype(str).str.strip().to_numpy()
        bad = np.flatnonzero(~np.isin(sv, SPLITS))
        if len(bad):
            raise DatasetError(
                f"images_csv: {csv_path}, {_line(bad[0])}: split column {cfg['split_column']!r} holds "
                f"{df[cfg['split_column']].iloc[bad[0]]!r}; valid values: {', '.join(SPLITS)}"
            )
        parts = {s: np.flatnonzero(sv == s) for s in SPLITS}
        log(f"images_csv: splits from column {cfg['split_column']!r}")
    else:
        rng = np.random.default_rng(cfg["seed"])
        fractions = {"test": cfg["test_fraction"], "val": cfg["val_fraction"], "train": 1.0}
        parts = stratified_parts(y, g, len(group_names), fractions, rng)
        parts = {s: parts[s] for s in SPLITS}
        log(
            f"images_csv: seeded split (seed {cfg['seed']}) stratified by label x group: "
            f"test {cfg['test_fraction']}, val {cfg['val_fraction']}, the rest train"
        )

    # every group and label x group cell in every split
    counts = {s: cell_counts(y[idx], g[idx], len(class_names), len(group_names)) for s, idx in parts.items()}
    for s in SPLITS:
        c = np.asarray(counts[s])
        for k, gname in enumerate(group_names):
            if c[:, k].sum() == 0:
                raise DatasetError(
                    f"images_csv: the {s} split has no image of group {gname!r} (columns {', '.join(gcols)}); "
                    f"every group needs images in train, val and test: {_remedy(cfg)}"
                )
        for ci, cname in enumerate(class_names):
            for k, gname in enumerate(group_names):
                if c[ci, k] == 0:
                    total = sum(int(np.asarray(counts[t])[ci, k]) for t in SPLITS)
                    raise DatasetError(
                        f"images_csv: the {s} split has no image with label {cname!r} in group {gname!r} "
                        f"(the cell has {total} image(s) in all); every label x group cell needs images in "
                        f"train, val and test: {_remedy(cfg)}"
                    )

    # every path inside the root and present, before any decoding
    paths = []
    for i, rel in enumerate(df[cfg["path_column"]].tolist()):
        where = f"{csv_path}, {_line(i)}"
        full = resolve_image(image_dir, str(rel), where)
        if not os.path.isfile(full):
            raise DatasetError(
                f"images_csv: {where}: the image {full} (column {cfg['path_column']!r} = {rel!r}) does not exist; "
                f"paths are relative to the image root {os.path.abspath(image_dir)}/"
            )
        paths.append(full)

    from PIL import Image

    size, mode = cfg["image_size"], MODES[cfg["channels"]]
    out = {}
    for s, idx in parts.items():
        x = np.empty((len(idx), cfg["channels"], size, size), np.uint8)
        for j, i in enumerate(idx):
            try:
                with Image.open(paths[i]) as im:
                    x[j] = square_resize(im, size, mode)
            except Exception as e:
                raise DatasetError(
                    f"images_csv: {csv_path}, {_line(i)}: the image {paths[i]} does not decode "
                    f"({type(e).__name__}: {e}); replace it with an image Pillow reads, or remove the row"
                ) from None
            if (j + 1) % 5000 == 0:
                log(f"images_csv {s}: {j + 1}/{len(idx)} images")
        out[s] = (x, y[idx], g[idx])
        log(
            f"images_csv {s}: {len(idx)} images, groups "
            + ", ".join(f"{name}={int((g[idx] == k).sum())}" for k, name in enumerate(group_names))
        )
    for warning in small_cell_warnings(counts["test"], class_names, group_names):
        log(warning)
    return {
        "splits": out,
        "class_names": class_names,
        "group_names": group_names,
        "meta": {"group_columns": gcols},
    }


def _remedy(cfg) -> str:
    if cfg["split_column"] is not None:
        return f"assign some of its rows to that split in column {cfg['split_column']!r}"
    return "add images of it (a cell needs at least 3 for the seeded split), or raise val_fraction/test_fraction"


def small_cell_warnings(test_counts, class_names, group_names, threshold=SMALL_CELL) -> list:
    """One warning per test label x group cell under `threshold` images, with the width of its
    95% Wilson interval at 50% accuracy (the widest the cell's accuracy interval can be)."""
    out = []
    for ci, row in enumerate(test_counts):
        for k, n in enumerate(row):
            if n < threshold:
                out.append(
                    f"WARNING: images_csv: the test cell label {class_names[ci]!r} x group {group_names[k]!r} has "
                    f"{n} image(s) (< {threshold}): its accuracy is measured to within a 95% interval up to "
                    f"{100 * wilson_width(n):.0f} points wide (Wilson, at 50% accuracy); treat it as noise"
                )
    return out
