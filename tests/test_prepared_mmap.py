"""The prepared on-disk form: one .npy per array and split, x memory-mapped read-only (the page
cache holds one copy for every job on a node), and every half-written, damaged or outdated form
refused with a DatasetError that names the file and says to rerun the prepare step."""

import json
import os
import shutil

import numpy as np
import pytest

import pwprune.data.digits as digits
from pwprune.data import DatasetError, load_prepared, prepare

quiet = lambda *_: None  # noqa: E731
CFG = {"kind": "digits", "image_size": 8}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(out_dir, the splits as built in memory) of one prepare."""
    out = tmp_path_factory.mktemp("prep")
    built = {}
    real = digits.build

    def capture(*a, **kw):
        built.update(real(*a, **kw))
        return built

    mp = pytest.MonkeyPatch()
    mp.setattr(digits, "build", capture)
    try:
        prepare(CFG, None, out, log=quiet)
    finally:
        mp.undo()
    return out, built["splits"]


@pytest.fixture
def copy(prepared, tmp_path):
    out = tmp_path / "prep"
    shutil.copytree(prepared[0], out)
    return out


def _refused(out, split, *words):
    with pytest.raises(DatasetError) as e:
        load_prepared(out).splits[split]
    for w in [*words, "prepare step"]:
        assert str(w) in str(e.value), (w, str(e.value))


def test_layout_and_x_is_a_read_only_memmap_of_the_prepared_values(prepared):
    out, built = prepared
    names = ["train", "val", "test"]
    assert sorted(os.listdir(out)) == sorted(["meta.json"] + [f"{n}.{a}.npy" for n in names for a in "xyg"])
    p = load_prepared(out)
    for n in names:
        s, (x, y, g) = p.splits[n], built[n]
        assert isinstance(s.x, np.memmap) and s.x.mode == "r" and not s.x.flags.writeable
        assert os.path.samefile(s.x.filename, out / f"{n}.x.npy")
        assert s.x.dtype == np.uint8 and s.x.shape == x.shape and np.array_equal(s.x, x)
        assert s.y.dtype == np.int64 and s.g.dtype == np.int64 and not isinstance(s.y, np.memmap)
        assert np.array_equal(s.y, y) and np.array_equal(s.g, g)
        with pytest.raises(ValueError):  # read-only: no job can change the shared pages
            s.x[0, 0, 0, 0] = 1
    assert p.splits["train"] is p.splits["train"]  # opened once per Prepared


def test_prepare_killed_after_the_first_split_is_refused(prepared, copy, monkeypatch):
    calls, real = [], np.save

    def killed(f, arr, **kw):
        calls.append(1)
        if len(calls) == 4:  # train's x, y, g written; killed on val's x
            raise KeyboardInterrupt("killed mid-prepare")
        return real(f, arr, **kw)

    monkeypatch.setattr(np, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare({**CFG, "seed": 5}, None, copy, log=quiet)
    assert not (copy / "meta.json").exists()  # the old meta no longer vouches for the mixed files
    assert not [f for f in os.listdir(copy) if ".tmp" in f]
    with pytest.raises(DatasetError, match="meta.json") as e:
        load_prepared(copy)
    assert "prepare step" in str(e.value)


@pytest.mark.parametrize("keep", [0, 40, 200, -1], ids=["empty", "in-header", "after-header", "one-byte-short"])
def test_truncated_x_is_refused_naming_the_file(copy, keep):
    path = copy / "train.x.npy"
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    _refused(copy, "train", path)
    load_prepared(copy).splits["test"]  # the other splits stay readable


def test_missing_or_inconsistent_arrays_are_refused_naming_the_file(copy):
    (copy / "val.x.npy").unlink()
    _refused(copy, "val", copy / "val.x.npy")
    n = len(load_prepared(copy).splits["test"])
    np.save(copy / "test.y.npy", np.zeros(n - 1, np.int64))  # a y of another prepare
    _refused(copy, "test", copy / "test.y.npy", f"({n},)")
    np.save(copy / "train.x.npy", np.zeros((5, 3, 8, 8), np.float32))  # float images
    _refused(copy, "train", copy / "train.x.npy", "uint8")
    meta = json.loads((copy / "meta.json").read_text())
    np.save(copy / "train.x.npy", np.zeros((meta["sizes"]["train"], 3, 8), np.uint8))  # 3-D
    _refused(copy, "train", copy / "train.x.npy", "uint8")


def test_the_old_npz_form_is_refused_and_a_new_prepare_replaces_it(prepared, tmp_path):
    out, built = prepared
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(out / "meta.json", old / "meta.json")
    for n, (x, y, g) in built.items():  # what pwprune wrote before memory-mapped splits
        np.savez(old / f"{n}.npz", x=x, y=y, g=g)
    with pytest.raises(DatasetError) as e:
        load_prepared(old)
    msg = str(e.value)
    assert "train.npz" in msg and "older pwprune" in msg and "prepare step" in msg
    prepare(CFG, None, old, log=quiet)
    assert not list(old.glob("*.npz"))
    assert np.array_equal(load_prepared(old).splits["train"].x, built["train"][0])


def test_diagnostics_reads_labels_through_the_loader(prepared, copy):
    from pwprune.diagnostics import read_train_labels

    y, g, meta = read_train_labels(copy)
    assert np.array_equal(y, prepared[1]["train"][1]) and np.array_equal(g, prepared[1]["train"][2])
    assert meta == json.loads((copy / "meta.json").read_text())
    (copy / "train.g.npy").write_bytes(b"")
    with pytest.raises(DatasetError, match="train.g.npy"):
        read_train_labels(copy)
