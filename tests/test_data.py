"""pwprune.data: the embedded default, the real-format loaders (on tiny fixtures in each
dataset's real on-disk layout, read through torchvision's own classes), the prepared format, and
the clear refusals on missing or broken data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_fixtures import trust_fixture_md5s, write_celeba, write_cifar10, write_fitzpatrick
from pwprune.data import DATASET_KINDS, DatasetError, load_prepared, prepare, resolve_config, split_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
quiet = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    prepare({"kind": "digits"}, None, out, log=quiet)
    return out


# ---- the embedded default


def test_digits_group_shares_and_sizes(digits_dir):
    p = load_prepared(digits_dir)
    m = p.meta
    assert m["kind"] == "digits" and m["num_classes"] == 10 and m["group_names"] == ["majority", "minority"]
    assert m["in_channels"] == 3 and m["input_size"] == 16 and m["splits"] == ["train", "val", "test"]
    assert m["eval_splits"] == ["test"] and m["groups_are_classes"] is False
    sizes = {n: len(p.splits[n]) for n in m["splits"]}
    assert sum(sizes.values()) == 1797  # every scikit-learn digit used exactly once
    share = {n: p.splits[n].g.mean() for n in m["splits"]}
    assert abs(share["train"] - 0.08) < 0.01  # under-represented in training
    assert abs(share["test"] - 0.5) < 0.02 and abs(share["val"] - 0.5) < 0.03  # balanced where measured
    for n in m["splits"]:  # stratified: every label in every split, both groups in every label
        s = p.splits[n]
        assert s.x.dtype == np.uint8 and s.x.shape[1:] == (3, 16, 16)
        assert s.y.dtype == np.int64 and s.g.dtype == np.int64
        for c in range(10):
            assert ((s.y == c) & (s.g == 1)).any() and ((s.y == c) & (s.g == 0)).any()
    # train mean/std in [0, 1] units, per channel
    x = p.splits["train"].x.astype(np.float64) / 255
    assert np.allclose(m["mean"], x.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(m["std"], x.std(axis=(0, 2, 3)), atol=1e-6)


def test_digits_minority_is_visually_different(digits_dir):
    t = load_prepared(digits_dir).splits["test"]
    maj, mino = t.x[t.g == 0].astype(float) / 255, t.x[t.g == 1].astype(float) / 255
    # inverted polarity: the majority background (corners) is dark, the minority's light
    corner = lambda a: a[:, :, :2, :2].mean()  # noqa: E731
    assert corner(maj) < 0.15 and corner(mino) > 0.3
    # recolour: majority ink is amber (red > blue), the minority's palette is blue-dominated
    assert maj[:, 0].mean() > maj[:, 2].mean() and mino[:, 2].mean() > mino[:, 0].mean()


def test_digits_config_knobs_and_determinism(tmp_path):
    cfg = {
        "kind": "digits",
        "minority_share": 0.2,
        "image_size": 12,
        "seed": 3,
        "style": "invert",
        "val_fraction": 0.1,
        "test_fraction": 0.2,
    }
    a = prepare(cfg, None, tmp_path / "a", log=quiet)
    prepare(cfg, None, tmp_path / "b", log=quiet)
    assert a["input_size"] == 12 and abs(a["group_counts"]["train"][1] / a["sizes"]["train"] - 0.2) < 0.02
    for n in ("train", "val", "test"):
        for k in "xyg":  # seeded: byte-identical files
            assert (tmp_path / "a" / f"{n}.{k}.npy").read_bytes() == (tmp_path / "b" / f"{n}.{k}.npy").read_bytes()
    c = prepare({**cfg, "seed": 4}, None, tmp_path / "c", log=quiet)
    assert (
        not np.array_equal(np.load(tmp_path / "a" / "train.g.npy"), np.load(tmp_path / "c" / "train.g.npy"))
        or a["sizes"] != c["sizes"]
    )


@pytest.mark.slow
def test_digits_does_not_import_torchvision(tmp_path):
    code = (
        "import sys; from pwprune.data import prepare, load_prepared; "
        f"prepare({{'kind': 'digits'}}, None, {str(tmp_path)!r}, log=lambda *_: None); "
        f"load_prepared({str(tmp_path)!r}).splits['train']; "
        "assert 'torchvision' not in sys.modules and 'torch' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_split_dataset_normalises_and_augments(digits_dir):
    import torch
    from torch.utils.data import DataLoader

    from pwprune.data import SplitDataset

    p = load_prepared(digits_dir)
    ds = SplitDataset(p.splits["test"], p.meta)
    x, y, g, idx = ds[5]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16) and int(idx) == 5
    raw = torch.from_numpy(np.array(p.splits["test"].x[5])).float() / 255  # a writable copy of the mapped row
    mean, std = torch.tensor(p.meta["mean"]).view(3, 1, 1), torch.tensor(p.meta["std"]).view(3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)
    assert int(y) == p.splits["test"].y[5] and int(g) == p.splits["test"].g[5]
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert [t.shape[0] for t in batch] == [8] * 4 and batch[3].tolist() == list(range(8))
    aug = SplitDataset(p.splits["test"], p.meta, augment=True)
    torch.manual_seed(0)
    a = torch.stack([aug[i][0] for i in range(20)])
    torch.manual_seed(0)
    b = torch.stack([aug[i][0] for i in range(20)])
    plain = torch.stack([ds[i][0] for i in range(20)])
    assert torch.equal(a, b) and not torch.equal(a, plain)  # seeded through torch's RNG, and it changes images


# ---- config


def test_split_names_from_config_alone(tmp_path):
    assert split_names({"kind": "digits"}) == ["train", "val", "test"]
    assert split_names({"kind": "cifar10", "variant": "shortcut"}) == ["train", "val", "test", "test_shortcut"]
    assert split_names({"kind": "cifar10", "variant": "imbalanced"}) == ["train", "val", "test"]
    assert split_names({"kind": "celeba", "root": str(tmp_path / "nothing")}) == ["train", "val", "test"]
    assert split_names({"kind": "fitzpatrick17k"}) == ["train", "val", "test"]
    assert split_names({"kind": "images_csv", "group_columns": ["sex", "site"]}) == ["train", "val", "test"]
    assert set(DATASET_KINDS) == {"digits", "cifar10", "celeba", "fitzpatrick17k", "images_csv"}


@pytest.mark.parametrize(
    "cfg, words",
    [
        ({"kind": "digits", "minorty_share": 0.1}, ["'minorty_share'", "minority_share", "valid keys"]),
        ({"kind": "mnist"}, ["'mnist'", "digits", "cifar10", "celeba", "fitzpatrick17k"]),
        ({"kind": "digits", "style": ["invert", "sepia"]}, ["'sepia'", "invert", "recolor", "texture"]),
        ({"kind": "cifar10", "variant": "noisy"}, ["'noisy'", "standard", "imbalanced", "shortcut"]),
        ({"kind": "cifar10", "imbalanced_classes": ["kitten"]}, ["'kitten'", "cat", "dog"]),
        ({"kind": "celeba", "target": "Blonde_Hair"}, ["'Blonde_Hair'", "Blond_Hair", "Male", "Young"]),
        ({"kind": "celeba", "group": "Gender"}, ["'Gender'", "Male"]),
        ({"kind": "celeba", "rebalance": {"alpha": 5, "gamma": 1}}, ["rebalance", "alpha", "beta"]),
        ({"kind": "digits", "val_fraction": 1.5}, ["val_fraction", "1.5"]),
    ],
)
def test_bad_config_names_the_key_and_the_valid_ones(cfg, words):
    with pytest.raises(DatasetError) as e:
        resolve_config(cfg)
    for w in words:
        assert w in str(e.value)


# ---- CIFAR-10 (torchvision's CIFAR10 on real-format pickled batches)


def _square_count(x):
    """Per image: the number of pure yellow pixels (fixture pixels never exceed 200)."""
    return ((x[:, 0] == 255) & (x[:, 1] == 255) & (x[:, 2] == 0)).sum(axis=(1, 2))


def test_cifar10_standard(cifar_root, tmp_path):
    m = prepare({"kind": "cifar10", "val_fraction": 0.1}, cifar_root, tmp_path / "out", log=quiet)
    p = load_prepared(tmp_path / "out")
    assert m["class_names"][3] == "cat" and m["group_names"] == m["class_names"] and m["num_classes"] == 10
    assert m["sizes"] == {"train": 900, "val": 100, "test": 100}
    assert m["groups_are_classes"] is True and p.meta["groups_are_classes"] is True  # per-class AUROC (metrics)
    for n in ("train", "val", "test"):
        s = p.splits[n]
        assert np.array_equal(s.g, s.y)  # groups = classes
        assert np.bincount(s.y, minlength=10).tolist() == [len(s) // 10] * 10  # stratified
        assert s.x.shape[1:] == (3, 32, 32)


def test_cifar10_images_match_the_raw_batches(cifar_root, tmp_path):
    import pickle

    with open(cifar_root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    prepare({"kind": "cifar10"}, cifar_root, tmp_path / "out", log=quiet)
    t = load_prepared(tmp_path / "out").splits["test"]
    assert np.array_equal(t.x.reshape(len(t), -1), raw["data"]) and t.y.tolist() == raw["labels"]


def test_cifar10_imbalanced(cifar_root, tmp_path):
    m = prepare({"kind": "cifar10", "variant": "imbalanced", "seed": 1}, cifar_root, tmp_path / "out", log=quiet)
    assert m["name"] == "cifar10_imbalanced"
    p = load_prepared(tmp_path / "out")
    counts = np.bincount(np.concatenate([p.splits["train"].y, p.splits["val"].y]), minlength=10)
    assert counts[3] == counts[5] == 20  # 20% of 100 cats / dogs kept
    assert all(counts[c] == 100 for c in range(10) if c not in (3, 5))
    assert np.bincount(p.splits["test"].y, minlength=10).tolist() == [10] * 10  # test untouched
    m2 = prepare(
        {"kind": "cifar10", "variant": "imbalanced", "keep_fraction": 0.5}, cifar_root, tmp_path / "o2", log=quiet
    )
    assert m2["sizes"]["train"] + m2["sizes"]["val"] == 900


def test_cifar10_shortcut(cifar_root, tmp_path):
    m = prepare({"kind": "cifar10", "variant": "shortcut"}, cifar_root, tmp_path / "out", log=quiet)
    assert m["splits"] == ["train", "val", "test", "test_shortcut"]
    assert m["eval_splits"] == ["test", "test_shortcut"]
    p = load_prepared(tmp_path / "out")
    tr = p.splits["train"]
    has = _square_count(tr.x) > 0
    assert set(_square_count(tr.x)[has]) <= {16}  # one 4x4 square, fully inside the image
    dog = tr.y == 5
    assert has[dog].sum() == round(0.98 * dog.sum())  # 98% of the dogs
    assert has[~dog].sum() == sum(round(0.02 * (tr.y == c).sum()) for c in range(10) if c != 5)  # 2% of others
    assert (_square_count(p.splits["test"].x) == 0).all()  # clean test
    ts = p.splits["test_shortcut"]
    assert (_square_count(ts.x) == 16).all()  # every shortcut-test image has the square
    assert np.array_equal(ts.y, p.splits["test"].y)
    # outside the square the shortcut test set is the clean test set
    assert ((ts.x != p.splits["test"].x).any(axis=1).sum(axis=(1, 2)) == 16).all()


# ---- CelebA (torchvision's CelebA on its real text files + JPEGs)


@pytest.fixture
def celeba_root(tmp_path, monkeypatch):
    root = tmp_path / "raw"
    write_celeba(root)
    trust_fixture_md5s(monkeypatch, root)
    return root


def test_celeba_labels_groups_splits(celeba_root, tmp_path):
    import torchvision

    m = prepare({"kind": "celeba", "image_size": 16}, celeba_root, tmp_path / "out", log=quiet)
    assert m["class_names"] == ["not Blond_Hair", "Blond_Hair"] and m["group_names"] == ["female", "male"]
    assert m["sizes"] == {"train": 40, "val": 6, "test": 6} and m["input_size"] == 16
    p = load_prepared(tmp_path / "out")
    # labels/groups agree with torchvision's own reading of the attribute file
    ds = torchvision.datasets.CelebA(celeba_root, split="train", target_type="attr")
    names = [a for a in ds.attr_names if a]
    assert p.splits["train"].y.tolist() == ds.attr[:, names.index("Blond_Hair")].tolist()
    assert p.splits["train"].g.tolist() == ds.attr[:, names.index("Male")].tolist()
    cells = {
        (a, b): int(((p.splits["train"].y == a) & (p.splits["train"].g == b)).sum()) for a in (0, 1) for b in (0, 1)
    }
    assert cells == {(1, 1): 2, (1, 0): 8, (0, 1): 12, (0, 0): 18}
    m2 = prepare(
        {"kind": "celeba", "image_size": 8, "target": "Smiling", "group": "Young"},
        celeba_root,
        tmp_path / "o2",
        log=quiet,
    )
    assert m2["class_names"] == ["not Smiling", "Smiling"] and m2["group_names"] == ["old", "young"]


def test_celeba_rebalance(celeba_root, tmp_path):
    """alpha and beta mean what they mean in the authors' get_celebA_data (datasets/helpers.py):
    with the minority cell (min_label, min_group) at n, the cell (same label, other group) gets
    alpha * n, (other label, same group) beta * n, and (other label, other group) alpha * beta * n.
    Fixture training cells by (label, group) = (Blond_Hair, Male): (1, 1) 2 (the minority, blond
    males), (1, 0) 8, (0, 1) 12, (0, 0) 18."""

    def cells(name, alpha, beta):
        m = prepare(
            {"kind": "celeba", "image_size": 8, "rebalance": {"alpha": alpha, "beta": beta}},
            celeba_root,
            tmp_path / name,
            log=quiet,
        )
        tr = load_prepared(tmp_path / name).splits["train"]
        return m, {(a, b): int(((tr.y == a) & (tr.g == b)).sum()) for a in (0, 1) for b in (0, 1)}

    # alpha != beta, every target available (n stays 2): a swap of alpha and beta gives (1, 0): 6, (0, 1): 4
    m, got = cells("ab", 2, 3)
    assert got == {(1, 1): 2, (1, 0): 2 * 2, (0, 1): 3 * 2, (0, 0): 2 * 3 * 2}
    assert m["sizes"]["val"] == 6 and m["sizes"]["test"] == 6  # official val/test untouched
    assert cells("b", 1, 1)[1] == {(1, 1): 2, (1, 0): 2, (0, 1): 2, (0, 0): 2}
    # (1, 5): five non-blond images per blond one, groups balanced inside each class
    assert cells("c", 1, 5)[1] == {(1, 1): 2, (1, 0): 2, (0, 1): 10, (0, 0): 10}
    # (5, 1) would need 10 blond females but only 8 exist: the minority shrinks so the ratios hold
    assert cells("a", 5, 1)[1] == {(1, 1): 1, (1, 0): 5, (0, 1): 1, (0, 0): 5}


# ---- Fitzpatrick17k (public CSV + images/<md5hash>.jpg)


def test_fitzpatrick_splits_groups_labels(tmp_path):
    root = tmp_path / "raw"
    rows = write_fitzpatrick(root, per_cell=10)
    m = prepare({"kind": "fitzpatrick17k", "image_size": 16}, root, tmp_path / "out", log=quiet)
    assert m["class_names"] == ["non-neoplastic", "benign", "malignant"]
    assert m["group_names"] == ["1-2", "3-4", "5-6"]
    p = load_prepared(tmp_path / "out")
    total = sum(len(p.splits[n]) for n in ("train", "val", "test"))
    assert total == sum(1 for r in rows if r[1] > 0)  # skin type -1 dropped, nothing else lost
    assert set(p.splits["train"].g.tolist()) == {0}  # trained on skin types 1-2 only
    for n in ("val", "test"):
        assert set(p.splits[n].g.tolist()) == {0, 1, 2}
    # 60 rows per group; 1-2: 20% test, 10% val; 3-4 and 5-6: 10% val, rest test
    assert m["group_counts"] == {"train": [42, 0, 0], "val": [6, 6, 6], "test": [12, 54, 54]}
    assert np.bincount(p.splits["train"].y, minlength=3).tolist() == [14, 14, 14]  # stratified by label


def test_fitzpatrick_labels_follow_the_csv(tmp_path):
    root = tmp_path / "raw"
    write_fitzpatrick(root, per_cell=2)
    m = prepare(
        {"kind": "fitzpatrick17k", "image_size": 8, "val_fraction": 0.25, "test_fraction": 0.25},
        root,
        tmp_path / "out",
        log=quiet,
    )
    assert m["config"]["val_fraction"] == 0.25
    p = load_prepared(tmp_path / "out")
    assert all(set(np.unique(p.splits[n].y)) <= {0, 1, 2} for n in p.meta["splits"])


def test_fitzpatrick_every_sample_has_its_csv_rows_label_and_group(tmp_path):
    """Row by row: each prepared image is found in the source CSV (by its pixels), and its label
    and group are that row's three_partition_label and skin-type pair; every labelled row is
    prepared exactly once."""
    import csv

    from PIL import Image

    from pwprune.data.common import square_resize

    root = tmp_path / "raw"
    write_fitzpatrick(root, per_cell=3)
    prepare({"kind": "fitzpatrick17k", "image_size": 8}, root, tmp_path / "out", log=quiet)
    with open(root / "fitzpatrick17k.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["fitzpatrick_scale"]) > 0]
    by_pixels = {}
    for r in rows:
        with Image.open(root / "images" / f"{r['md5hash']}.jpg") as im:
            by_pixels[square_resize(im, 8).tobytes()] = r
    assert len(by_pixels) == len(rows)  # the fixture's images tell its rows apart
    label_of = {"non-neoplastic": 0, "benign": 1, "malignant": 2}
    group_of = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2}  # "1-2", "3-4", "5-6"
    p = load_prepared(tmp_path / "out")
    assert p.meta["class_names"] == list(label_of) and p.meta["group_names"] == ["1-2", "3-4", "5-6"]
    seen = []
    for name in ("train", "val", "test"):
        sp = p.splits[name]
        for x, y, g in zip(sp.x, sp.y, sp.g):
            r = by_pixels[x.tobytes()]
            assert (int(y), int(g)) == (label_of[r["three_partition_label"]], group_of[int(r["fitzpatrick_scale"])]), (
                name,
                r,
            )
            seen.append(r["md5hash"])
    assert sorted(seen) == sorted(r["md5hash"] for r in rows)


# ---- missing / incomplete / broken data: one clear message, nothing written


def _assert_refused(cfg, raw, out, words):
    with pytest.raises(DatasetError) as e:
        prepare(cfg, raw, out, log=quiet)
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    assert not os.path.exists(out) or os.listdir(out) == []
    return msg


def test_missing_cifar10(tmp_path):
    raw = tmp_path / "nothing"
    _assert_refused(
        {"kind": "cifar10"}, raw, tmp_path / "out", [str(raw / "cifar-10-batches-py"), "dvc pull", "download=True"]
    )


def test_incomplete_cifar10(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_cifar10(raw, per_class_train=5, per_class_test=1)
    os.remove(raw / "cifar-10-batches-py" / "data_batch_4")
    _assert_refused(
        {"kind": "cifar10"},
        raw,
        tmp_path / "out",
        [str(raw / "cifar-10-batches-py" / "data_batch_4"), "dvc pull", "download=True"],
    )


def test_cifar10_not_the_official_files(tmp_path):
    # the real md5 check stays on: fixture files are not the official ones, so the real loader refuses
    raw = tmp_path / "raw"
    write_cifar10(raw, per_class_train=5, per_class_test=1)
    _assert_refused(
        {"kind": "cifar10"}, raw, tmp_path / "out", [str(raw / "cifar-10-batches-py"), "integrity", "download=True"]
    )


def test_missing_celeba_file(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_celeba(raw)
    os.remove(raw / "celeba" / "list_landmarks_align_celeba.txt")
    _assert_refused(
        {"kind": "celeba"},
        raw,
        tmp_path / "out",
        [str(raw / "celeba" / "list_landmarks_align_celeba.txt"), "dvc pull", "download=True", "mmlab.ie.cuhk.edu.hk"],
    )


def test_celeba_broken_image(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    names, _ = write_celeba(raw)
    trust_fixture_md5s(monkeypatch, raw)
    bad = raw / "celeba" / "img_align_celeba" / names[3]
    bad.write_bytes(b"not a jpeg")
    _assert_refused({"kind": "celeba", "image_size": 8}, raw, tmp_path / "out", [str(bad), "dvc pull"])


def test_celeba_unknown_attribute_in_file(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_celeba(raw)
    trust_fixture_md5s(monkeypatch, raw)
    _assert_refused(
        {"kind": "celeba", "target": "Purple_Hair"},
        raw,
        tmp_path / "out",
        ["'Purple_Hair'", "Blond_Hair", "Wearing_Necktie"],
    )


def test_missing_fitzpatrick_csv(tmp_path):
    raw = tmp_path / "nothing"
    _assert_refused(
        {"kind": "fitzpatrick17k"},
        raw,
        tmp_path / "out",
        [str(raw / "fitzpatrick17k.csv"), "python -m pwprune.data.fitzpatrick17k download", "dvc pull"],
    )


def test_fitzpatrick_missing_and_broken_images(tmp_path):
    raw = tmp_path / "raw"
    rows = write_fitzpatrick(raw, per_cell=2)
    gone = raw / "images" / f"{rows[4][0]}.jpg"
    os.remove(gone)
    _assert_refused(
        {"kind": "fitzpatrick17k"},
        raw,
        tmp_path / "out",
        [str(gone), "1 of", "python -m pwprune.data.fitzpatrick17k download"],
    )
    gone.write_bytes(b"\xff\xd8 truncated")
    _assert_refused(
        {"kind": "fitzpatrick17k"},
        raw,
        tmp_path / "out",
        [str(gone), "does not decode", "python -m pwprune.data.fitzpatrick17k download"],
    )


# ---- the prepared form is atomic: meta.json last, never a half-written dataset


def test_interrupted_prepare_is_not_accepted(tmp_path, monkeypatch, digits_dir):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(digits_dir, out)  # an older complete prepare
    calls = []
    real = np.save

    def failing_save(f, arr, **kw):  # killed after the first split's three arrays
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed mid-prepare")
        return real(f, arr, **kw)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        prepare({"kind": "digits", "seed": 9}, None, out, log=quiet)
    assert not (out / "meta.json").exists()
    assert not [f for f in os.listdir(out) if ".tmp" in f]  # no temp file left behind
    with pytest.raises(DatasetError, match="meta.json"):
        load_prepared(out)


def test_meta_json_is_plain_json(digits_dir):
    meta = json.loads((digits_dir / "meta.json").read_text())
    for key in (
        "name",
        "kind",
        "num_classes",
        "class_names",
        "group_names",
        "in_channels",
        "input_size",
        "mean",
        "std",
        "splits",
        "eval_splits",
    ):
        assert key in meta
    assert len(meta["mean"]) == len(meta["std"]) == 3 and all(0 < s <= 1 for s in meta["std"])


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("celeba", "img_align_celeba"),
        ("fitzpatrick17k", "fitzpatrick17k.csv"),
    ],
)
def test_check_raw_names_the_missing_path_without_decoding(tmp_path, kind, expected):
    # the start-up check: presence only, the expected path and how to get the data
    from pwprune.data import check_raw

    with pytest.raises(DatasetError) as err:
        check_raw({"kind": kind, "root": str(tmp_path / kind)})
    assert str(tmp_path / kind) in str(err.value) and expected in str(err.value)
    assert "dvc pull" in str(err.value)
    check_raw({"kind": "digits"})  # ships with scikit-learn: nothing to check
