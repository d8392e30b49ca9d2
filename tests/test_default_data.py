"""The default experiment's data (distorted digits, several renderings per training scan) and the
batched loader that feeds it."""

import numpy as np
import pytest
import torch
import yaml

from helpers import REPO
from pwprune.data import DatasetError, SplitDataset, load_prepared, prepare, resolve_config
from pwprune.data.digits import distort
from pwprune.train import make_loader


def _params_default():
    return yaml.safe_load((REPO / "params.yaml").read_text())["experiments"]["default"]


def _per_sample_batches(ds, batch_size, shuffle, seed):
    """What the loader gave before it gathered whole batches: DataLoader's own collation."""
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed), num_workers=0
    )
    return list(loader)


@pytest.fixture(scope="module")
def small_prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_copies")
    # noise 0: a majority image is then its stroke map times a random brightness, so two renderings
    # of one distortion are proportional and only a new distortion makes them differ in shape
    prepare(
        {
            "kind": "digits",
            "image_size": 8,
            "train_copies": 3,
            "rotation": 15,
            "shift": 0.1,
            "occlusion": 0.4,
            "noise": 0.0,
            "seed": 3,
        },
        out_dir=out,
        log=lambda *a: None,
    )
    return load_prepared(out)


@pytest.mark.parametrize("shuffle", [True, False])
def test_batched_loader_gives_the_per_sample_batches(small_prepared, shuffle):
    ds = SplitDataset(small_prepared.splits["train"], small_prepared.meta, augment=False)
    torch.manual_seed(5)
    fast = list(make_loader(ds, batch_size=50, shuffle=shuffle, seed=7))
    after_fast = torch.rand(3)
    torch.manual_seed(5)
    slow = _per_sample_batches(ds, 50, shuffle, 7)
    assert torch.equal(after_fast, torch.rand(3))  # the global RNG is consumed alike
    assert len(fast) == len(slow) == -(-len(ds) // 50)
    for a, b in zip(fast, slow):
        for ta, tb in zip(a, b):
            assert ta.dtype == tb.dtype and torch.equal(ta, tb)
    # a second pass reshuffles (the generator moves on), as DataLoader's shuffle does
    if shuffle:
        again = list(make_loader(ds, batch_size=50, shuffle=True, seed=7))
        assert torch.equal(again[0][3], fast[0][3])
        loader = make_loader(ds, batch_size=50, shuffle=True, seed=7)
        first, second = [b[3] for b in loader], [b[3] for b in loader]
        assert not torch.equal(torch.cat(first), torch.cat(second))


def test_augmented_loader_keeps_per_sample_draws(small_prepared):
    ds = SplitDataset(small_prepared.splits["train"], small_prepared.meta, augment=True)
    torch.manual_seed(0)
    fast = next(iter(make_loader(ds, batch_size=32, shuffle=True, seed=1)))
    torch.manual_seed(0)
    slow = _per_sample_batches(ds, 32, True, 1)[0]
    for ta, tb in zip(fast, slow):
        assert torch.equal(ta, tb)


def test_copies_are_distinct_renderings_that_keep_label_and_group(small_prepared):
    tr, meta = small_prepared.splits["train"], small_prepared.meta
    n_scans = len(tr) // 3
    assert len(tr) == 3 * n_scans and meta["sizes"]["test"] == len(small_prepared.splits["test"])
    y, g, x = tr.y.reshape(3, n_scans), tr.g.reshape(3, n_scans), tr.x.reshape(3, n_scans, -1)
    assert (y == y[0]).all() and (g == g[0]).all()  # copy k of scan i is still scan i
    # every copy is its own distortion of the scan, not one distortion rendered again: the
    # renderings of a majority scan are far from proportional to each other
    maj = g[0] == 0
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert (x[a] != x[b]).any(axis=1).all()
        xa, xb = x[a][maj].astype(float), x[b][maj].astype(float)
        xa, xb = xa - xa.mean(1, keepdims=True), xb - xb.mean(1, keepdims=True)
        corr = (xa * xb).sum(1) / np.sqrt((xa**2).sum(1) * (xb**2).sum(1))
        assert np.median(corr) < 0.95, np.median(corr)
    # evaluation splits get one distorted view per scan, not copies
    assert len(small_prepared.splits["test"]) + len(small_prepared.splits["val"]) + n_scans == 1797


def test_distort_identity_and_occlusion():
    rng = np.random.default_rng(0)
    v = rng.uniform(0.2, 1.0, (20, 12, 12)).astype(np.float32)
    none = {"rotation": 0.0, "scale": 0.0, "shift": 0.0, "occlusion": 0.0, "occlusion_rate": 0.5}
    assert np.allclose(distort(v, none, np.random.default_rng(1)), v, atol=1e-6)
    occl = {**none, "occlusion": 0.5, "occlusion_rate": 1.0}
    out = distort(v, occl, np.random.default_rng(1))
    k = 6
    for im in out:  # one blanked 6x6 square in each image (v > 0.2 everywhere else)
        zero = im == 0
        assert zero.sum() == k * k
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert np.ptp(rows) == np.ptp(cols) == k - 1
    rate = distort(v.repeat(20, axis=0), {**occl, "occlusion_rate": 0.3}, np.random.default_rng(2))
    share = ((rate == 0).reshape(len(rate), -1).any(1)).mean()
    assert 0.2 < share < 0.4
    rotated = distort(v, {**none, "rotation": 30.0}, np.random.default_rng(3))
    assert not np.allclose(rotated, v) and rotated.min() >= 0 and rotated.max() <= 1


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"train_copies": 0}, "train_copies"),
        ({"train_copies": 2.5, "rotation": 10}, "train_copies"),
        ({"train_copies": 4}, "train_copies > 1 needs a distortion"),
        ({"test_copies": 0, "rotation": 10}, "test_copies 0 is invalid"),
        ({"test_copies": True, "rotation": 10}, "test_copies"),
        ({"test_copies": 3}, "test_copies > 1 needs a distortion"),
        ({"shift": 0.7}, "'shift'"),
        ({"occlusion": 1.5}, "'occlusion'"),
        ({"rotation": -5}, "'rotation'"),
    ],
)
def test_bad_distortion_settings_are_refused_by_name(bad, key):
    with pytest.raises(DatasetError, match=key):
        resolve_config({"kind": "digits", **bad})


@pytest.mark.slow
def test_default_teacher_learns_the_minority_without_memorising_it(tmp_path):
    """The default experiment's reason to exist (issue 11): the dense model must handle the
    under-represented style on held-out data, yet stay unsure of it on its own training images,
    so that the PW weights differ between the groups. Trains the default's real dense model."""
    from pwprune.diagnostics import WEIGHT_RATIO_LIMIT
    from pwprune.stages.evaluate import evaluate_stage
    from pwprune.stages.train import train_dense_stage

    exp = _params_default()
    prepare(exp["dataset"], out_dir=tmp_path / "prep", log=lambda *a: None)
    out = {k: tmp_path / f"{k}.out" for k in ("model", "metrics", "history", "teacher")}
    torch.manual_seed(0)
    train_dense_stage(
        tmp_path / "prep", exp["model"], exp["train"], 0, torch.device("cpu"), "default dense", out, log=lambda *a: None
    )
    evaluate_stage(
        out["model"],
        tmp_path / "prep",
        {"batch_size": 512, "latency_repeats": 1},
        "cpu",
        out["metrics"],
        log=lambda *a: None,
    )
    import pandas as pd

    test = pd.read_csv(out["metrics"]).query("split == 'test'").set_index("group")["accuracy"]
    assert test["minority"] >= 0.7, test
    logits = torch.load(out["teacher"], weights_only=True)["logits"]
    train = load_prepared(tmp_path / "prep").splits["train"]
    y, g = torch.from_numpy(train.y), torch.from_numpy(train.g)
    p_true = logits.softmax(1)[torch.arange(len(y)), y]
    s_maj, s_min = p_true[g == 0].mean().item(), p_true[g == 1].mean().item()
    assert s_maj > 0.95 and s_min < s_maj - 0.05, (s_maj, s_min)
    m, gamma = exp["pw"]["min_weight"], exp["pw"]["gamma"]
    w = m + (1 - m) * (1 - p_true) ** gamma  # the weights the PW loss gives (shared/mission.md)
    # apart by more than the teacher diagnostic's bar, under which PW acts like CE (issue 29's
    # converged dense model: about 1.19, against 1.5 for the 8-epoch one before it)
    assert w[g == 1].mean() > WEIGHT_RATIO_LIMIT * w[g == 0].mean()


DEFER_SCRIPT = r"""
import sys, torch
from pwprune.train import defer_dynamo, fit
from pwprune.loss import make_loss
if sys.argv[1] == "defer":
    assert defer_dynamo() is True
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 3, (40,))
loader = [(x[i:i + 10], y[i:i + 10], torch.zeros(10, dtype=torch.long), torch.arange(i, i + 10))
          for i in range(0, 40, 10)]
for opt in ("adamw", "sgd"):
    fit(model, loader, epochs=2, lr=0.01, weight_decay=0.01, loss_fn=make_loss("ce"), optimizer=opt,
        log=lambda *a: None)
real = type(sys.modules.get("torch._dynamo")).__name__
torch.save({k: v for k, v in model.state_dict().items()}, sys.argv[2])
print(real)
"""


@pytest.mark.slow
def test_deferred_dynamo_trains_identically_without_importing_it(tmp_path):
    import subprocess
    import sys

    outs = {}
    for m in ("defer", "plain"):
        proc = subprocess.run(
            [sys.executable, "-c", DEFER_SCRIPT, m, str(tmp_path / f"{m}.pt")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[m] = proc.stdout.strip()
    # with the stand-in, AdamW and SGD steps never load the real torch._dynamo; without it they do
    assert outs == {"defer": "_Deferred", "plain": "module"}
    a, b = (torch.load(tmp_path / f"{m}.pt", weights_only=True) for m in ("defer", "plain"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_deferred_dynamo_hands_over_on_real_use():
    import subprocess
    import sys

    code = (
        "import sys, torch\nfrom pwprune.train import defer_dynamo\ndefer_dynamo()\n"
        "assert defer_dynamo() is False or type(sys.modules['torch._dynamo']).__name__ == '_Deferred'\n"
        "f = torch.compile(lambda t: t * 2 + 1, backend='eager')\n"
        "assert torch.equal(f(torch.ones(3)), torch.full((3,), 3.0))\n"
        "assert type(sys.modules['torch._dynamo']).__name__ == 'module'\n"
        "assert defer_dynamo() is False\nprint('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_job_csv_writer_matches_pandas(tmp_path):
    """Jobs write their metrics without pandas; the bytes must be what pandas wrote before."""
    import pandas as pd

    from pwprune.stages.jobs import write_rows

    rows = [
        {
            "stage": "finetuned",
            "split": "test",
            "group": "types 3-4, light",
            "n": np.int64(270),
            "accuracy": np.float64(0.7185185185185186),
            "auroc": float("nan"),
            "degenerate": np.bool_(False),
            "params": 12345,
            "macs": 2.5e6,
            "latency_ms": 0.1 + 0.2,
            "achieved_reduction": 0.0,
        },
        {
            "stage": "finetuned",
            "split": "test",
            "group": "all",
            "n": 539,
            "accuracy": 1.0,
            "auroc": None,
            "degenerate": True,
            "params": 12345,
            "macs": 2500000.0,
            "latency_ms": 1e-7,
            "achieved_reduction": 0.7519,
        },
    ]
    cols = list(rows[0])
    write_rows(tmp_path / "mine.csv", rows, cols)
    pd.DataFrame(rows)[cols].to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "mine.csv").read_text() == (tmp_path / "pandas.csv").read_text()
    write_rows(tmp_path / "empty.csv", [], ["epoch", "share"])
    pd.DataFrame(columns=["epoch", "share"]).to_csv(tmp_path / "empty_pd.csv", index=False)
    assert (tmp_path / "empty.csv").read_text() == (tmp_path / "empty_pd.csv").read_text()


def test_test_copies_render_each_test_scan_anew_and_leave_train_and_val_as_they_are(tmp_path):
    """test_copies k: the test split holds k distinct renderings of each test scan, each with its
    scan's label and group (so the group shares stay the evaluation's), drawn after the training
    and validation splits, whose bytes (and so the dense models trained on them) do not change."""
    cfg = {"kind": "digits", "image_size": 8, "train_copies": 2, "rotation": 15, "occlusion": 0.4, "seed": 1}
    one, three = tmp_path / "one", tmp_path / "three"
    prepare(cfg, out_dir=one, log=lambda *a: None)
    prepare({**cfg, "test_copies": 3}, out_dir=three, log=lambda *a: None)
    a, b = load_prepared(one), load_prepared(three)
    for split in ("train", "val"):
        assert np.array_equal(np.asarray(a.splits[split].x), np.asarray(b.splits[split].x))
        assert np.array_equal(a.splits[split].y, b.splits[split].y)
    n = len(a.splits["test"].y)
    assert len(b.splits["test"].y) == 3 * n == b.meta["sizes"]["test"]
    assert np.array_equal(b.splits["test"].y, np.tile(a.splits["test"].y, 3))
    assert np.array_equal(b.splits["test"].g, np.tile(a.splits["test"].g, 3))
    x = np.asarray(b.splits["test"].x).reshape(3, n, -1)
    assert not np.array_equal(x[0], x[1]) and not np.array_equal(x[1], x[2])
    assert b.meta["group_counts"]["test"] == [3 * c for c in a.meta["group_counts"]["test"]]
