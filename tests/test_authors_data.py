"""The authors' data choices as options (issue 19, items 8 and 9), on the fixtures that write each
dataset in its real on-disk format.

Fitzpatrick17k `split: authors`: every skin type 1-2 image trains; n // 4 of the 3-4 and of the
5-6 images are val, the rest test (their datasets/helpers.py:155-192, --validation off).
CIFAR-10 `variant: imbalanced_authors`: their helpers.py:114-125 as written (draws with
replacement, elementwise `sum`), checked against those lines run literally.
"""

import pickle

import numpy as np
import pytest

from data_fixtures import write_fitzpatrick
from pwprune.data import DatasetError, load_prepared, prepare, resolve_config


def quiet(*a, **k):
    pass


# ---------------------------------------------------------------- Fitzpatrick17k


def pixels(split):
    return sorted(x.tobytes() for x in split.x)


@pytest.mark.parametrize("per_cell", [10, 3])
def test_fitzpatrick_authors_split(tmp_path, per_cell):
    root = tmp_path / "raw"
    write_fitzpatrick(root, per_cell=per_cell)
    n = 2 * 3 * per_cell  # rows per group: two skin types x three classes
    m = prepare({"kind": "fitzpatrick17k", "image_size": 8, "split": "authors"}, root, tmp_path / "a", log=quiet)
    assert m["group_names"] == ["1-2", "3-4", "5-6"]
    val = n // 4  # helpers.py:170-171, their validation split; test is the rest (helpers.py:174-177)
    assert m["group_counts"] == {"train": [n, 0, 0], "val": [0, val, val], "test": [0, n - val, n - val]}
    # every type 1-2 image is in train: the same images as pwprune's split puts in its three splits
    ours = prepare({"kind": "fitzpatrick17k", "image_size": 8}, root, tmp_path / "p", log=quiet)
    assert ours["config"]["split"] == "pwprune"  # the default keeps pwprune's held-out 1-2 images
    assert ours["group_counts"]["train"][0] < n
    a, p = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "p")
    light = sorted(
        x.tobytes() for name in ("train", "val", "test") for x, g in zip(p.splits[name].x, p.splits[name].g) if g == 0
    )
    assert pixels(a.splits["train"]) == light
    # val and test split the 3-4 and 5-6 images between them, each exactly once
    dark = sorted(x.tobytes() for name in ("val", "test") for x, g in zip(p.splits[name].x, p.splits[name].g) if g)
    assert sorted(pixels(a.splits["val"]) + pixels(a.splits["test"])) == dark
    assert not set(pixels(a.splits["val"])) & set(pixels(a.splits["test"]))
    assert m["eval_splits"] == ["test"]


def test_fitzpatrick_split_is_seeded_and_checked(tmp_path):
    root = tmp_path / "raw"
    write_fitzpatrick(root, per_cell=6)
    cfg = {"kind": "fitzpatrick17k", "image_size": 8, "split": "authors"}
    prepare({**cfg, "seed": 1}, root, tmp_path / "s1", log=quiet)
    prepare({**cfg, "seed": 1}, root, tmp_path / "s1b", log=quiet)
    prepare({**cfg, "seed": 2}, root, tmp_path / "s2", log=quiet)
    val = [pixels(load_prepared(tmp_path / d).splits["val"]) for d in ("s1", "s1b", "s2")]
    assert val[0] == val[1] and val[0] != val[2]
    with pytest.raises(DatasetError, match="split 'theirs' is invalid; valid: pwprune, authors"):
        resolve_config({"kind": "fitzpatrick17k", "split": "theirs"})


# ---------------------------------------------------------------- CIFAR-10


def raw_train(root):
    xs, ys = [], []
    for b in range(1, 6):
        with open(root / "cifar-10-batches-py" / f"data_batch_{b}", "rb") as f:
            d = pickle.load(f, encoding="latin1")
        xs.append(d["data"])
        ys += d["labels"]
    return np.concatenate(xs), ys


def authors_lines(targets, seed):
    """datasets/helpers.py:115-124 of the authors' code, verbatim but for torchvision's dataset
    object (class_to_idx of cat and dog are 3 and 5)."""
    affected_classes = {3, 5}
    affected_idx = [[i for i in range(len(targets)) if targets[i] == x] for x in affected_classes]
    rng = np.random.default_rng(seed)
    discarded_idx = sum([rng.choice(x, int(0.8 * len(x))) for x in affected_idx])
    discarded_idx = set(discarded_idx)
    included_idx = [i for i in range(len(targets)) if i not in discarded_idx]
    return included_idx


def test_cifar10_imbalanced_authors_is_their_code_as_written(cifar_root, tmp_path):
    x, y = raw_train(cifar_root)
    seed = 123456789  # helpers.py:119: the authors' seed gives their exact draws
    m = prepare(
        {"kind": "cifar10", "variant": "imbalanced_authors", "seed": seed}, cifar_root, tmp_path / "o", log=quiet
    )
    assert m["name"] == "cifar10_imbalanced_authors"
    p = load_prepared(tmp_path / "o")
    pool = sorted(s.tobytes() for n in ("train", "val") for s in p.splits[n].x.reshape(len(p.splits[n]), -1))
    included = authors_lines(y, seed)
    assert pool == sorted(x[i].tobytes() for i in included)
    counts = np.bincount(np.concatenate([p.splits["train"].y, p.splits["val"].y]), minlength=10)
    # not 20 % of the cats and dogs: a few images of every class are gone, cats and dogs as the rest
    assert counts[3] > 50 and counts[5] > 50
    assert (counts < 100).sum() >= 5 and counts.sum() < 1000
    assert np.bincount(p.splits["test"].y, minlength=10).tolist() == [10] * 10  # test untouched
    # the stated design, variant imbalanced, is another data set
    prepare({"kind": "cifar10", "variant": "imbalanced", "seed": seed}, cifar_root, tmp_path / "i", log=quiet)
    assert (
        load_prepared(tmp_path / "i").meta["sizes"]["train"] + load_prepared(tmp_path / "i").meta["sizes"]["val"] == 840
    )
