"""Intersectional groups (pwprune.data.groups, CelebA's list-valued `group`) and the `images_csv`
kind: your own images (real PNG and JPEG files) described by a CSV with string labels and two
group columns, prepared, refused with the row/column/file when broken, and run end to end
through the real Snakemake CLI."""

import csv
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pwprune.data import DatasetError, check_raw, load_prepared, prepare
from pwprune.data.groups import combine, wilson_width

quiet = lambda *_: None  # noqa: E731

LABELS = ("benign", "malignant")
SEXES = ("M", "F")  # deliberately not sorted: the names must come out sorted
SITES = ("clinic_b", "clinic_a")
GROUP_NAMES = ["F & clinic_a", "F & clinic_b", "M & clinic_a", "M & clinic_b"]  # sorted product, sex slowest


# ---- the mechanism


def test_combine_orders_the_product_first_attribute_slowest():
    a = np.array([1, 0, 1, 0, 1])
    b = np.array(["y", "y", "x", "x", "y"])
    ids, names, values = combine([a, b], [[0, 1], ["x", "y"]], [["female", "male"], ["old", "young"]])
    assert names == ["female & old", "female & young", "male & old", "male & young"]
    assert values == [(0, "x"), (0, "y"), (1, "x"), (1, "y")]
    assert ids.tolist() == [3, 1, 2, 0, 3]  # 2 * a + position of b
    assert [names[i] for i in ids] == ["male & young", "female & young", "male & old", "female & old", "male & young"]


def test_combine_keeps_or_drops_empty_combinations():
    a, b = np.array([0, 0, 1]), np.array([0, 1, 1])  # (1, 0) never occurs
    dom, nm = [[0, 1], [0, 1]], [["a0", "a1"], ["b0", "b1"]]
    ids, names, _ = combine([a, b], dom, nm, empty="keep")
    assert names == ["a0 & b0", "a0 & b1", "a1 & b0", "a1 & b1"] and ids.tolist() == [0, 1, 3]
    ids, names, _ = combine([a, b], dom, nm, empty="drop")
    assert names == ["a0 & b0", "a0 & b1", "a1 & b1"] and ids.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="2.*not in its domain"):
        combine([np.array([0, 2])], [[0, 1]], [["x", "y"]])


def test_one_attribute_gives_its_values_and_names_unchanged():
    g = np.array([1, 0, 0, 1])
    ids, names, _ = combine([g], [[0, 1]], [["female", "male"]])
    assert ids.tolist() == g.tolist() and names == ["female", "male"]


def test_wilson_width_by_hand():
    # z = 1.959964, n = 5, p = 0.5: z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/(4n^2)), doubled
    assert wilson_width(5) == pytest.approx(2 * 0.329577, abs=2e-5)
    assert wilson_width(100) == pytest.approx(0.1924, abs=1e-3)  # ~ the normal approximation 2 * 1.96 * 0.05
    assert wilson_width(0) == float("inf")


def test_summary_lists_groups_by_name_and_flags_small_ones():
    from pwprune.summary import group_section

    rows = [
        dict(experiment="e", split="test", stage=stage, seed=seed, group=g, n=n)
        for stage in ("dense", "finetuned")
        for seed in (1, 0)
        for g, n in (("female & old", 5), ("male & young", 40), ("all", 45))
    ]
    lines = group_section(pd.DataFrame(rows))
    assert lines[-2] == "- e, test: female & old: 5 (< 30: ±33 pp at 95%); male & young: 40"  # 50 * 0.6592


# ---- CelebA: a list of attributes, through data preparation to the per-group metric rows


@pytest.mark.slow
def test_celeba_intersectional_groups_reach_the_metric_rows(tmp_path, monkeypatch):
    import torch
    import torchvision

    from data_fixtures import trust_fixture_md5s, write_celeba
    from pwprune.checkpoint import load_checkpoint, save_checkpoint
    from pwprune.inference import predict
    from pwprune.models import arch_dict, build_from_arch
    from pwprune.stages.evaluate import evaluate_stage
    from pwprune.stages.inputs import eval_loader

    root = tmp_path / "raw"
    write_celeba(root)
    trust_fixture_md5s(monkeypatch, root)
    m = prepare({"kind": "celeba", "image_size": 8, "group": ["Male", "Young"]}, root, tmp_path / "d", log=quiet)
    assert m["group_names"] == ["female & old", "female & young", "male & old", "male & young"]
    p = load_prepared(tmp_path / "d")
    ds = torchvision.datasets.CelebA(root, split="test", target_type="attr")
    names = [a for a in ds.attr_names if a]
    expected_g = 2 * ds.attr[:, names.index("Male")] + ds.attr[:, names.index("Young")]
    assert p.splits["test"].g.tolist() == expected_g.tolist()
    assert m["group_counts"]["test"] == [int((expected_g == k).sum()) for k in range(4)]

    torch.manual_seed(0)
    arch = arch_dict("small_cnn", 2, 3, 8)
    save_checkpoint(
        tmp_path / "model.pt", build_from_arch(arch), arch, meta={"stage": "dense", "achieved_reduction": 0.0}
    )
    rows = evaluate_stage(
        tmp_path / "model.pt", tmp_path / "d", {"batch_size": 4, "latency_repeats": 1}, "cpu", tmp_path / "m.csv"
    )
    table = pd.read_csv(tmp_path / "m.csv")
    assert table["group"].tolist() == [*m["group_names"], "all"] == [r["group"] for r in rows]
    model = load_checkpoint(tmp_path / "model.pt")[0]
    logits, y, g = predict(model, eval_loader(p, "test", 4, arch))
    pred = (logits > 0).long()
    for k, name in enumerate(m["group_names"]):
        row = table[table["group"] == name].iloc[0]
        assert row["n"] == int((g == k).sum())
        if row["n"]:
            assert row["accuracy"] == pytest.approx(float((pred[g == k] == y[g == k]).float().mean()))


# ---- images_csv: a small dataset of real PNG and JPEG files


def write_dataset(root, per_cell=4, split=None, size=(12, 10)):
    """root/images/{png,jpg}/... and root/labels.csv (columns file, diagnosis, sex, site[, split]).
    Image of row i: one flat colour 4 * i (lossless in PNG, within 1 or 2 in JPEG), so a prepared
    sample names its row. `split`: None, or a function (row dict) -> train/val/test."""
    rows = []
    for lab in LABELS:
        for sex in SEXES:
            for site in SITES:
                for _ in range(per_cell):
                    rows.append({"diagnosis": lab, "sex": sex, "site": site})
    os.makedirs(root / "images" / "png", exist_ok=True)
    os.makedirs(root / "images" / "jpg", exist_ok=True)
    for i, r in enumerate(rows):
        rel = f"png/{i:03d}.png" if i % 2 == 0 else f"jpg/{i:03d}.jpg"
        Image.new("RGB", size, (4 * i,) * 3).save(root / "images" / rel)
        r["file"] = rel
        if split is not None:
            r["split"] = split(r, i)
    write_csv(root / "labels.csv", rows)
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def config(**kw):
    cfg = {
        "kind": "images_csv",
        "path_column": "file",
        "label_column": "diagnosis",
        "group_columns": ["sex", "site"],
        "image_size": 8,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
    }
    return {**cfg, **kw}


def row_of(split):
    """The CSV row each prepared sample came from (its flat colour / 4)."""
    return np.rint(split.x.reshape(len(split), -1).mean(axis=1) / 4).astype(int)


def test_prepare_names_shapes_and_labels_of_every_row(tmp_path):
    rows = write_dataset(tmp_path / "raw")
    m = prepare(config(), tmp_path / "raw", tmp_path / "out", log=quiet)
    assert m["class_names"] == list(LABELS) and m["group_names"] == GROUP_NAMES
    assert m["group_columns"] == ["sex", "site"] and m["in_channels"] == 3 and m["input_size"] == 8
    p = load_prepared(tmp_path / "out")
    seen = []
    for s in ("train", "val", "test"):
        sp = p.splits[s]
        assert sp.x.shape == (len(sp), 3, 8, 8)
        for i, y, g in zip(row_of(sp), sp.y, sp.g):
            r = rows[i]
            assert m["class_names"][y] == r["diagnosis"] and m["group_names"][g] == f"{r['sex']} & {r['site']}"
        seen += row_of(sp).tolist()
    assert sorted(seen) == list(range(len(rows)))  # every row once, PNG and JPEG alike
    grey = prepare(config(channels=1, image_size=10), tmp_path / "raw", tmp_path / "grey", log=quiet)
    assert grey["in_channels"] == 1 and load_prepared(tmp_path / "grey").splits["test"].x.shape[1:] == (1, 10, 10)


def test_seeded_split_is_stratified_by_label_and_group_and_counted_in_meta(tmp_path):
    write_dataset(tmp_path / "raw", per_cell=8)
    m = prepare(config(), tmp_path / "raw", tmp_path / "a", log=quiet)
    # 8 per cell, 0.25 / 0.25: every label x group cell puts exactly 2 in test, 2 in val, 4 in train
    assert m["cell_counts"] == {"train": [[4] * 4] * 2, "val": [[2] * 4] * 2, "test": [[2] * 4] * 2}
    assert m["group_counts"] == {"train": [8] * 4, "val": [4] * 4, "test": [4] * 4}
    p = load_prepared(tmp_path / "a")
    for s in ("train", "val", "test"):
        sp = p.splits[s]
        assert m["cell_counts"][s] == [[int(((sp.y == c) & (sp.g == k)).sum()) for k in range(4)] for c in range(2)]
    test_rows = lambda d: sorted(row_of(load_prepared(d).splits["test"]).tolist())  # noqa: E731
    prepare(config(), tmp_path / "raw", tmp_path / "b", log=quiet)
    prepare(config(seed=1), tmp_path / "raw", tmp_path / "c", log=quiet)
    assert test_rows(tmp_path / "a") == test_rows(tmp_path / "b")  # seeded
    assert test_rows(tmp_path / "a") != test_rows(tmp_path / "c")  # and the seed matters


def test_split_column_decides_the_splits(tmp_path):
    rows = write_dataset(tmp_path / "raw", split=lambda r, i: ("test", "val", "train", "train")[i % 4])
    m = prepare(config(split_column="split"), tmp_path / "raw", tmp_path / "out", log=quiet)
    p = load_prepared(tmp_path / "out")
    for s in ("train", "val", "test"):
        assert sorted(row_of(p.splits[s]).tolist()) == [i for i, r in enumerate(rows) if r["split"] == s]
    assert m["sizes"] == {"train": 16, "val": 8, "test": 8}


def test_small_test_cells_are_warned_with_their_interval_width(tmp_path):
    write_dataset(tmp_path / "raw")
    logged = []
    prepare(config(), tmp_path / "raw", tmp_path / "out", log=logged.append)
    warnings = [w for w in logged if w.startswith("WARNING")]
    assert len(warnings) == 8  # every test cell holds 1 image
    assert "'malignant' x group 'M & clinic_b' has 1 image(s)" in " ".join(warnings)
    assert f"{100 * wilson_width(1):.0f} points wide (Wilson" in warnings[0]


# ---- refusals: they name the row, column or file and what would be valid


def test_start_up_refuses_a_missing_csv_and_a_missing_column(tmp_path):
    from pwprune.config import ConfigError, check_raw_data

    with pytest.raises(DatasetError, match=r"the CSV .*nowhere\.csv does not exist"):
        check_raw(config(root=str(tmp_path / "raw"), csv="nowhere.csv"))
    write_dataset(tmp_path / "raw")
    with pytest.raises(DatasetError, match=r"no column 'age' \(group_columns\); its columns are: 'diagnosis'"):
        check_raw(config(root=str(tmp_path / "raw"), group_columns=["sex", "age"]))
    # the workflow's start-up check (dry runs included) goes through check_raw
    cfg = {
        "active": ["mine"],
        "experiments": {"mine": {"dataset": config(root=str(tmp_path / "raw"), label_column="dx")}},
    }
    with pytest.raises(ConfigError, match=r"experiments\.mine\.dataset: .*no column 'dx' \(label_column\)"):
        check_raw_data(cfg)
    check_raw(config(root=str(tmp_path / "raw")))  # the intact dataset passes


def _prepare_error(tmp_path, rows=None, **kw):
    if rows is not None:
        write_csv(tmp_path / "raw" / "labels.csv", rows)
    with pytest.raises(DatasetError) as e:
        prepare(config(**kw), tmp_path / "raw", tmp_path / "out", log=quiet)
    assert not (tmp_path / "out" / "meta.json").exists()
    return str(e.value)


@pytest.fixture
def data(tmp_path):
    return write_dataset(tmp_path / "raw")


def test_refuses_a_missing_image_naming_row_and_file(tmp_path, data):
    os.remove(tmp_path / "raw" / "images" / data[5]["file"])
    msg = _prepare_error(tmp_path)
    assert "line 7" in msg and data[5]["file"] in msg and "does not exist" in msg


def test_refuses_an_unreadable_image_naming_row_and_file(tmp_path, data):
    (tmp_path / "raw" / "images" / data[4]["file"]).write_bytes(b"not an image at all")
    msg = _prepare_error(tmp_path)
    assert "line 6" in msg and data[4]["file"] in msg and "does not decode" in msg


@pytest.mark.parametrize("escape", ["../outside.png", "png/../../outside.png", "ABSOLUTE"])
def test_refuses_a_path_that_escapes_the_image_root(tmp_path, data, escape):
    outside = tmp_path / "raw" / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)  # exists: only its place is wrong
    data[3]["file"] = str(outside) if escape == "ABSOLUTE" else escape
    msg = _prepare_error(tmp_path, data)
    assert "line 5" in msg and "escapes the image root" in msg and data[3]["file"] in msg
    # an absolute path inside the root is fine
    data[3]["file"] = str(tmp_path / "raw" / "images" / "jpg" / "003.jpg")
    write_csv(tmp_path / "raw" / "labels.csv", data)
    prepare(config(), tmp_path / "raw", tmp_path / "ok", log=quiet)


def test_refuses_a_single_label_value(tmp_path, data):
    msg = _prepare_error(tmp_path, [{**r, "diagnosis": "benign"} for r in data])
    assert "label column 'diagnosis'" in msg and "single value 'benign'" in msg and "at least two" in msg


def test_refuses_an_empty_value_naming_row_and_column(tmp_path, data):
    data[9]["site"] = ""
    msg = _prepare_error(tmp_path, data)
    assert "line 11" in msg and "column 'site' is empty" in msg


def test_refuses_a_group_absent_from_a_split(tmp_path):
    # every F & clinic_a image in train: the group has no test or val image
    write_dataset(
        tmp_path / "raw",
        split=lambda r, i: (
            "train" if (r["sex"], r["site"]) == ("F", "clinic_a") else ("train", "val", "test", "train")[i % 4]
        ),
    )
    msg = _prepare_error(tmp_path, split_column="split")
    assert "no image of group 'F & clinic_a'" in msg and "split" in msg and "column 'split'" in msg


def test_refuses_a_label_group_cell_absent_from_a_split(tmp_path):
    rows = write_dataset(tmp_path / "raw", per_cell=4)
    # malignant M & clinic_b: only 1 image left; the seeded split cannot put it in all three splits
    drop = [i for i, r in enumerate(rows) if (r["diagnosis"], r["sex"], r["site"]) == ("malignant", "M", "clinic_b")][
        1:
    ]
    msg = _prepare_error(tmp_path, [r for i, r in enumerate(rows) if i not in drop])
    assert "no image with label 'malignant' in group 'M & clinic_b'" in msg and "1 image(s) in all" in msg


def test_refuses_a_bad_split_value_and_bad_config(tmp_path):
    write_dataset(tmp_path / "raw", split=lambda r, i: "training" if i == 2 else ("train", "val", "test")[i % 3])
    msg = _prepare_error(tmp_path, split_column="split")
    assert "line 4" in msg and "'training'" in msg and "train, val, test" in msg
    with pytest.raises(DatasetError, match="group_columns"):
        prepare(config(group_columns=None), tmp_path / "raw", tmp_path / "o", log=quiet)
    with pytest.raises(DatasetError, match="more than one role"):
        prepare(config(group_columns=["sex", "diagnosis"]), tmp_path / "raw", tmp_path / "o", log=quiet)
    with pytest.raises(DatasetError, match="channels 2 is invalid; valid: 3"):
        prepare(config(channels=2), tmp_path / "raw", tmp_path / "o", log=quiet)


# ---- end to end through the real Snakemake CLI


# docs/your-data.md's worked example, included there verbatim: the guide shows what this test runs
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "your-data.yaml"
GUIDE = EXAMPLE.parent.parent / "your-data.md"


def example():
    """(the example's text, its experiment's name, that experiment)"""
    text = EXAMPLE.read_text()
    cfg = yaml.safe_load(text)
    (name,) = cfg["active"]
    return text, name, cfg["experiments"][name]


def test_the_guides_example_is_the_file_the_end_to_end_test_runs_and_it_validates():
    from pwprune.config import load_yaml_strict, validate
    from pwprune.data import resolve_config

    text, name, _ = example()
    guide = GUIDE.read_text()
    assert f"```yaml\n{text}```" in guide, "docs/your-data.md must include docs/examples/your-data.yaml verbatim"
    assert "snakemake --cores 2 results/figures/all --configfile docs/examples/your-data.yaml" in guide
    # merged into params.yaml as Snakemake's --configfile merges it, it passes the workflow's own checks
    root = EXAMPLE.parent.parent.parent
    cfg = load_yaml_strict(root / "params.yaml")
    cfg["active"] = [name]
    cfg["experiments"][name] = yaml.safe_load(text)["experiments"][name]
    exp = validate(cfg, root / "workflow" / "schemas" / "params.schema.yaml")["experiments"][name]
    ds = resolve_config(exp["dataset"])
    # what write_dataset (below) writes: string labels and two group columns
    assert (ds["kind"], ds["path_column"], ds["label_column"], ds["group_columns"]) == (
        "images_csv",
        "file",
        "diagnosis",
        ["sex", "site"],
    )
    assert set(exp["losses"]) == {"ce", "pw"}


@pytest.mark.e2e
def test_images_csv_end_to_end_shows_groups_by_name(tmp_path, monkeypatch):
    from helpers import copy_repo, snakemake

    _, name, exp = example()
    root = copy_repo(tmp_path / "repo")  # docs/examples/your-data.yaml included
    write_dataset(root / exp["dataset"]["root"], per_cell=8)  # 64 images, 4 per group in test
    # the guide's command
    snakemake(root, "--cores", "2", "results/figures/all", "--configfile", "docs/examples/your-data.yaml")
    figures = [f"results/figures/{name}/{f}.png" for f in ("group_performance", "fairness_gap", "loss_shares")]
    meta = load_prepared(root / "data" / "prepared" / name).meta
    assert meta["group_names"] == GROUP_NAMES and meta["class_names"] == list(LABELS)
    metrics = pd.read_csv(root / "results" / "metrics.csv")  # the figures' source table
    for stage in ("dense", "pruned", "finetuned"):
        got = metrics[(metrics["stage"] == stage) & (metrics["loss"] == "pw")]["group"].tolist()
        assert got == [*GROUP_NAMES, "all"]
    shares = pd.read_csv(root / "results" / "loss_shares.csv")  # the loss-share figure's source
    assert set(shares["group"]) == set(GROUP_NAMES) and set(shares["label"]) == set(LABELS)
    summary = (root / "results" / "summary.md").read_text()
    assert f"- {name}, test: F & clinic_a: 4 (< 30" in summary
    assert all(f"{g}: 4" in summary for g in GROUP_NAMES)
    assert all((root / f).stat().st_size > 0 for f in figures)
    # the guide's library door, run where the workflow ran: the run's fine-tuned per-group metrics
    block = re.search(r"## 6\. Without the workflow.*?```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    monkeypatch.chdir(root)
    namespace = {}
    exec(compile(block, "docs/your-data.md", "exec"), namespace)
    ours = namespace["result"].table().query("stage == 'finetuned'").set_index(["split", "group"])
    run = metrics.query("stage == 'finetuned' and method == 'magnitude' and loss == 'pw' and target_reduction == 0.5")
    run = run.set_index(["split", "group"]).loc[ours.index]
    for col in ("n", "accuracy", "auroc", "macs", "params"):
        assert ours[col].tolist() == pytest.approx(run[col].tolist(), abs=1e-12), col
