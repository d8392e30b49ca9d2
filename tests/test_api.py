"""pwprune.compress (pwprune/api.py), the library door: a tiny model and tiny synthetic data pruned to
a MAC target and fine-tuned with CE, PW and CEAG; per-group rows of the dense, pruned and fine-tuned
models with hand-checked values; bad arguments refused by name before any work; the same model and
metrics as the workflow's prune, fine-tune and evaluate stages (one implementation, two doors); and
the snippet of docs/api.md (the Python API page), run as it is written."""

import copy
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import pwprune
from pwprune.api import InMemoryData, compress, in_memory_data
from pwprune.inference import count_macs_params

REPO = Path(__file__).resolve().parent.parent
quiet = lambda *_: None  # noqa: E731
FAST_EVAL = {"latency_repeats": 1}
GROUPS = ("female", "male")


def synthetic(n, seed, size=8):
    """uint8 images whose label is visible (brighter top half for label 1) and string groups."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    g = rng.choice(GROUPS, size=n, p=[0.3, 0.7])
    x = rng.integers(0, 120, size=(n, 3, size, size)).astype(np.uint8)
    x[y == 1, :, : size // 2] += 120
    return x, y, g


@pytest.fixture(scope="module")
def data():
    return synthetic(64, 0), synthetic(40, 1)


def tiny_model():
    """Any nn.Module will do: two convs with batch norm and a single-logit head (~90 k MACs at 8 px)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1),
    )  # fmt: skip


def run(data, **kw):
    train, test = data
    args = dict(method="magnitude", target=0.5, loss="ce", epochs=1, lr=1e-3, batch_size=16, device="cpu")
    return compress(tiny_model(), train, test, **{**args, "evaluate": FAST_EVAL, "log": quiet, **kw})


def test_exported_lazily_and_import_stays_torch_free():
    import subprocess
    import sys

    assert pwprune.compress is compress and "compress" in pwprune.__all__
    code = "import sys, pwprune; assert 'torch' not in sys.modules, 'import pwprune loaded torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_compress_reaches_the_target_and_reports_every_group_at_every_stage(data):
    (x, y, g), (xt, yt, gt) = data
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    r = compress(
        model, (x, y, g), (xt, yt, gt), method="magnitude", target=0.5, loss="ce", epochs=1, batch_size=16,
        device="cpu", evaluate=FAST_EVAL, log=quiet,
    )  # fmt: skip
    # the target, within the pruning tolerance, in real MAC counts of the returned model
    ex = torch.zeros(1, 3, 8, 8)
    assert r.within_tolerance and abs(r.achieved_reduction - 0.5) <= 0.02
    assert r.achieved_reduction == pytest.approx(1 - r.macs_after / r.macs_before)
    assert (r.macs_before, r.macs_after) == (count_macs_params(model, ex)[0], count_macs_params(r.model, ex)[0])
    assert r.params_after < r.params_before
    # the caller's model is untouched; the result still runs, one logit per sample
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert r.model.eval()(torch.zeros(5, 3, 8, 8)).reshape(-1).shape == (5,)
    # one row per group (by name, sorted) and "all", for each stage
    t = r.table()
    for stage in ("dense", "pruned", "finetuned"):
        rows = t[t["stage"] == stage]
        assert rows["group"].tolist() == ["female", "male", "all"] and (rows["split"] == "test").all()
        assert rows["n"].tolist() == [int((gt == "female").sum()), int((gt == "male").sum()), len(gt)]
    # the dense rows by hand: normalised with the train split's per-channel mean/std, class 1 iff logit > 0
    xf = x.astype(np.float64) / 255
    mean, std = xf.mean(axis=(0, 2, 3)), xf.std(axis=(0, 2, 3))
    inp = torch.tensor((xt / 255 - mean[:, None, None]) / std[:, None, None], dtype=torch.float32)
    with torch.no_grad():
        pred = (model.eval()(inp).reshape(-1) > 0).numpy().astype(int)
    dense = t[t["stage"] == "dense"].set_index("group")
    for name in GROUPS:
        m = gt == name
        assert dense.loc[name, "accuracy"] == pytest.approx(np.mean(pred[m] == yt[m]))
    assert dense.loc["all", "macs"] == r.macs_before and (t[t["stage"] == "finetuned"]["macs"] == r.macs_after).all()
    # who pays: the drop of each group from dense to fine-tuned, and beyond the overall drop
    w = r.who_pays()
    fine = t[t["stage"] == "finetuned"].set_index("group")
    assert list(w.index) == ["female", "male", "all"]
    for name in ("female", "male"):
        drop = dense.loc[name, "accuracy"] - fine.loc[name, "accuracy"]
        assert w.loc[name, "drop"] == pytest.approx(drop)
        assert w.loc[name, "excess_drop"] == pytest.approx(drop - w.loc["all", "drop"])
    with pytest.raises(ValueError, match="split 'val' was not evaluated; evaluated splits: test"):
        r.who_pays("val")


def test_pw_and_ceag_fine_tune_with_their_losses(data):
    ce, pw = run(data, loss="ce"), run(data, loss="pw", loss_options={"min_weight": 0.3, "gamma": 1.0})
    # magnitude is data-free: both losses fine-tune the same pruned model, and PW changes the result
    pruned = lambda r: pd.DataFrame(r.metrics).query("stage == 'pruned'")["accuracy"].tolist()  # noqa: E731
    assert ce.macs_after == pw.macs_after and pruned(ce) == pruned(pw)
    assert ce.history[0]["loss"] != pw.history[0]["loss"]
    assert not all(torch.equal(a, b) for a, b in zip(ce.model.state_dict().values(), pw.model.state_dict().values()))
    assert {s["group"] for s in pw.loss_shares} == set(GROUPS) and {s["label"] for s in pw.loss_shares} == {"0", "1"}
    ceag = run(data, loss="ceag", loss_options={"epsilon": 0.02, "dual_lr": 0.5})
    assert "constraints" not in pw.history[-1]
    constraints = ceag.history[-1]["constraints"]  # one multiplier and one violation per group
    assert len(constraints["multipliers"]) == len(constraints["violations"]) == 2
    assert all(m >= 0 for m in constraints["multipliers"])


@pytest.mark.parametrize(
    "kw, error",
    [
        ({"method": "lottery"}, r"method 'lottery' is unknown; valid: random, magnitude, taylor, autobot, fairgrape"),
        ({"target": 1.0}, r"target must be a number in \(0, 1\)"),
        ({"target": 0}, r"target must be a number in \(0, 1\)"),
        ({"loss": "focal"}, r"loss 'focal' is unknown; valid: ce, pw, .*ceag"),
        ({"loss": "pw", "loss_options": {"epsilon": 0.1}},
         r"loss_options \['epsilon'\] do not apply to loss 'pw'; valid: min_weight, gamma"),
        ({"loss": "pw", "loss_options": {"min_weight": 2}}, r"loss_options: min_weight must be in \[0, 1\]"),
        ({"loss": "ceag", "loss_options": {"dual_lr": 0}}, r"loss_options: ceag: dual_lr"),
        ({"method_options": {"steps": 3}},
         r"method_options: unknown option\(s\) \['steps'\] for pruning method 'magnitude'; valid options"),
        ({"epochs": -1}, r"epochs must be an integer >= 0"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1"),
        ({"lr": 0}, r"lr must be a number > 0"),
        ({"layers": "dense"}, r"layers 'dense' is unknown; valid: all, conv"),
        ({"finetune_options": {"momentum": 0.9}}, r"finetune_options \['momentum'\] are unknown; valid: weight_decay"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_by_name(data, kw, error, monkeypatch):
    import pwprune.api

    monkeypatch.setattr(pwprune.api, "in_memory_data", None)  # refused before the data is even read
    with pytest.raises(ValueError, match=error):
        run(data, **kw)


def test_bad_data_and_model_are_refused_by_name(data):
    (x, y, g), test = data
    with pytest.raises(ValueError, match="train: groups has 63 entries but x has 64 samples; one per sample"):
        run(((x, y, g[:-1]), test))
    with pytest.raises(ValueError, match=r"test: labels has 39 entries but x has 40 samples"):
        run(((x, y, g), (test[0], test[1][1:], test[2])))
    with pytest.raises(
        ValueError, match=r"train: x must be \(N, C, H, W\) images, got shape \(64, 8, 8\) \(add the channel"
    ):
        run(((x[:, 0], y, g), test))
    with pytest.raises(ValueError, match=r"test: x is uint8 \(3, 6, 6\) per sample but train's is uint8 \(3, 8, 8\)"):
        run(((x, y, g), (test[0][:, :, :6, :6], test[1], test[2])))
    with pytest.raises(ValueError, match=r"test: required with per-split train data"):
        run(((x, y, g), None))
    with pytest.raises(TypeError, match=r"train: got int.*expected a prepared dataset"):
        in_memory_data(42, test)
    with pytest.raises(ValueError, match=r"labels: a single class \['0'\]"):
        run(((x, np.zeros_like(y), g), (test[0], np.zeros_like(test[1]), test[2])))
    with pytest.raises(
        ValueError, match=r"groups: value\(s\) \['male'\] are not among the names given \(\['female'\]\)"
    ):
        run(((x, y, g), test), group_names=["female"])
    three = ((x, y % 3 + (g == "male"), g), (test[0], test[1] % 3 + (test[2] == "male"), test[2]))
    with pytest.raises(
        ValueError, match=r"model: gives outputs of shape \(1, 1\) .* labels have 3 classes .*expected 3"
    ):
        run(three)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        compress("resnet18", *data, method="magnitude", target=0.5)


def test_data_forms_become_the_same_in_memory_splits(data, tmp_path):
    from pwprune.data import load_prepared, write_prepared
    from pwprune.data.dataset import Batches, SplitDataset

    d = in_memory_data(*data)
    assert isinstance(d, InMemoryData) and d.meta["group_names"] == list(GROUPS) and d.meta["class_names"] == ["0", "1"]
    assert d.meta["eval_splits"] == ["test"] and d.meta["group_counts"]["test"] == [
        int((data[1][2] == n).sum()) for n in GROUPS
    ]
    write_prepared(tmp_path / "p", {s: (v.x, v.y, v.g) for s, v in d.splits.items()}, d.meta)
    p = load_prepared(tmp_path / "p")
    assert in_memory_data(tmp_path / "p").meta == p.meta  # a prepared folder is taken as it is
    tr, te = p.splits["train"], p.splits["test"]
    for form in (
        (tr, te),
        (Batches(tr, p.meta, 8), Batches(te, p.meta, 8)),
        (SplitDataset(tr, p.meta), (te.x, te.y, te.g)),
        ((torch.from_numpy(np.array(tr.x)), torch.from_numpy(tr.y), torch.from_numpy(tr.g)), {"test": te}),
    ):
        e = in_memory_data(*form, group_names=list(GROUPS) if not isinstance(form[0], Batches) else None)
        assert e.meta["mean"] == pytest.approx(d.meta["mean"]) and e.meta["std"] == pytest.approx(d.meta["std"])
        for s in ("train", "test"):
            assert np.array_equal(e.splits[s].x, d.splits[s].x) and np.array_equal(e.splits[s].g, d.splits[s].g)


def test_float_inputs_are_used_as_given(data):
    (x, y, g), (xt, yt, gt) = data
    xf, xtf = x.astype(np.float32) / 10 - 3, xt.astype(np.float32) / 10 - 3
    d = in_memory_data((xf, y, g), (xtf, yt, gt))
    from pwprune.stages.inputs import eval_loader

    batch = next(iter(eval_loader(d, "test", 100)))[0]
    assert torch.allclose(batch, torch.from_numpy(xtf), atol=1e-5)


# ---- one implementation, two doors: the workflow's stages and compress give the same model and metrics


def _stage_run(tmp, method, loss, method_options, pw, epochs):
    """The workflow's dense training, prune, fine-tune and evaluate stages, each seeded as its job is."""
    from pwprune.config import phase_losses
    from pwprune.stages.evaluate import evaluate_stage
    from pwprune.stages.finetune import finetune_stage
    from pwprune.stages.prune import prune_stage
    from pwprune.stages.train import train_dense_stage
    from pwprune.train import seed_everything

    loop = {"epochs": epochs, "lr": 0.003, "batch_size": 16}
    dense = {k: tmp / "dense" / f for k, f in (("model", "model.pt"), ("history", "h.json"), ("teacher", "t.pt"))}
    seed_everything(0)
    train_dense_stage(tmp / "data", "small_cnn", loop, 0, "cpu", "dense", dense, log=quiet)
    ploss, floss = phase_losses(loss, method)
    prune = {"method": method, "target": 0.5, "tolerance": 0.02, "layers": "all", "options": method_options}
    prune.update(loss=ploss, batch_size=16, augment=False, **({"pw": pw} if ploss.startswith("pw") else {}))
    pruned = {"model": tmp / "pruned" / "model.pt", "info": tmp / "pruned" / "prune.json"}
    seed_everything(0)
    prune_stage(tmp / "data", dense["model"], dense["teacher"], prune, 0, "cpu", "prune", pruned, log=quiet)
    tuned = {k: tmp / "tuned" / f for k, f in (("model", "model.pt"), ("shares", "s.csv"), ("history", "h.json"))}
    finetune = {"loop": loop, "loss": floss, **({"pw": pw} if floss.startswith("pw") else {"ceag": pw})}
    seed_everything(0)
    finetune_stage(
        tmp / "data", pruned["model"], dense["model"], dense["teacher"], finetune, 0, "cpu", "ft", tuned, log=quiet
    )
    rows = []
    for stage, path in (("dense", dense["model"]), ("pruned", pruned["model"]), ("finetuned", tuned["model"])):
        rows += evaluate_stage(path, tmp / "data", {"latency_repeats": 1}, "cpu", tmp / f"{stage}.csv", log=quiet)
    return dense["model"], json.loads(pruned["info"].read_text()), tuned, rows


COMPARED = ["stage", "split", "group", "n", "accuracy", "auroc", "tpr", "fpr", "degenerate", "params", "macs"]


def _same_as_the_stages(tmp_path, method, loss, method_options, pw, arrays=False, epochs=1):
    """The stages on a prepared folder, then compress on that folder (and, with `arrays`, on the
    arrays it was written from): the same fine-tuned weights, prune.json counts, metric rows and
    loss shares."""
    from pwprune.checkpoint import load_checkpoint
    from pwprune.data import write_prepared

    data = synthetic(32, 0), synthetic(24, 1)
    d = in_memory_data(*data)
    write_prepared(tmp_path / "data", {s: (v.x, v.y, v.g) for s, v in d.splits.items()}, d.meta)
    dense_path, info, tuned, stage_rows = _stage_run(tmp_path, method, loss, method_options, pw, epochs)
    stage_model = load_checkpoint(tuned["model"])[0]
    for door in [tmp_path / "data", *([data] if arrays else [])]:
        r = compress(
            load_checkpoint(dense_path)[0], *((door,) if isinstance(door, Path) else door), method=method,
            target=0.5, loss=loss, method_options=method_options, loss_options=pw, epochs=epochs, lr=0.003,
            batch_size=16, seed=0, device="cpu", evaluate={"latency_repeats": 1}, log=quiet,
        )  # fmt: skip
        assert (r.macs_before, r.macs_after, r.achieved_reduction) == (
            info["macs_before"],
            info["macs_after"],
            info["achieved_reduction"],
        )
        state = stage_model.state_dict()
        assert r.model.state_dict().keys() == state.keys()
        assert all(torch.equal(v, state[k]) for k, v in r.model.state_dict().items())
        ours = pd.DataFrame(r.metrics)[COMPARED]
        theirs = pd.DataFrame(stage_rows)[COMPARED]
        pd.testing.assert_frame_equal(ours, theirs)
        shares = pd.read_csv(tuned["shares"], dtype={"label": str, "group": str})
        pd.testing.assert_frame_equal(pd.DataFrame(r.loss_shares)[list(shares.columns)], shares)


def test_stages_and_compress_give_the_same_model_and_metrics(tmp_path):
    """magnitude (data-free) pruning, PW fine-tuning against the dense training stage's teacher file
    and compress's in-memory teacher."""
    _same_as_the_stages(tmp_path, "magnitude", "pw", {}, {"min_weight": 0.3, "gamma": 1.0})


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, loss, options, settings",
    [
        ("taylor", "pw", {"steps": 2, "batches_per_step": 2}, {"min_weight": 0.3, "gamma": 1.0}),
        ("fairprune", "ceag", {"batches": 2}, {"epsilon": 0.02, "dual_lr": 0.5}),
    ],
)
def test_stages_and_compress_agree_for_data_driven_methods_from_both_doors(tmp_path, method, loss, options, settings):
    """Data-driven pruning (loader, loss and cached teacher in the pruning phase too) and CEAG, from a
    prepared folder and from plain arrays, over two epochs."""
    _same_as_the_stages(tmp_path, method, loss, options, settings, arrays=True, epochs=2)


# ---- docs/api.md's snippet, run as written


def docs_snippet() -> str:
    text = (REPO / "docs" / "api.md").read_text()
    library = text[: text.index("## Reference")]  # the page's text, before the generated reference
    blocks = re.findall(r"```python\n(.*?)```", library, re.S)
    assert len(blocks) == 1 and "pwprune.compress(" in blocks[0], "docs/api.md: one python block calling compress"
    return blocks[0]


def test_docs_snippet_runs_as_written(capsys):
    namespace = {}
    exec(compile(docs_snippet(), "docs/api.md", "exec"), namespace)
    r = namespace["result"]
    assert isinstance(r, pwprune.CompressionResult) and r.within_tolerance
    assert list(r.who_pays().index) == ["female", "male", "all"]
    assert f"{r.macs_before} -> {r.macs_after} MACs" in capsys.readouterr().out
