"""Peak resident memory: the largest fine-tuning job of a completed run (Snakemake's benchmark
TSVs, max_rss) and, each in a fresh subprocess (its own VmHWM), a
fine-tuning job of the default experiment and a ResNet-18 training step at batch 64, 224 px.

And what a job holds of its prepared data (`mapped_split`): a synthetic train split of 1 GiB
(21,846 images, 128 px RGB uint8, 2 classes, 2 groups) written with pwprune.data.write_prepared,
then one epoch of a small conv net through train_loader + fit, each run in a fresh subprocess,
side by side: x loaded whole into the job's memory (np.load without mmap_mode, what every job did
while splits were .npz files) against x memory-mapped by load_prepared (MAPPED_SPLIT_RUNS). Each
figure is the job's peak minus the same process's peak before the data is opened (model,
optimizer and one warm-up batch trained through the same loader and fit). Pages of a mapped file
that the job touched count in its RSS (VmHWM) as RssFile: they are the OS page cache, one copy
shared by every job on the node that maps the same file, and reclaimable under memory pressure;
the job's own memory is its private (anonymous) part, RssAnon, sampled every 20 ms. Goal: RssAnon
peak - baseline under 10 % of the split's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import log, result

REPO = Path(__file__).resolve().parents[1]

# the default experiment's fine-tuning job, the largest one (0.5 reduction, PW loss with the
# cached teacher), rebuilt without Snakemake: prepare, prune, fit one epoch, evaluate
DEFAULT_FINETUNE = """
import copy, sys, tempfile, torch, yaml
from pwprune.data import load_prepared, prepare
from pwprune.loss import CachedTeacher, make_loss, teacher_outputs
from pwprune.models import arch_dict, build_from_arch, example_input
from pwprune.stages.evaluate import evaluate
from pwprune.stages.inputs import eval_loader, train_loader
from pwprune.pruning import prune_to_target
from pwprune.config import pw_settings
from pwprune.train import fit
torch.set_num_threads(1)
exp = yaml.safe_load(open('params.yaml'))['experiments']['default']
with tempfile.TemporaryDirectory() as tmp:
    prepare(dict(exp['dataset']), raw_root=None, out_dir=tmp, log=lambda *a: None)
    p = load_prepared(tmp); m = p.meta
    arch = arch_dict(exp['model'], m['num_classes'], m['in_channels'], m['input_size'])
    dense = build_from_arch(arch)
    ft = exp['finetune']
    teacher = CachedTeacher(teacher_outputs(dense, train_loader(p, 512, 0, False, shuffle=False)))
    model = prune_to_target(copy.deepcopy(dense), 'random', 0.5, example_input(arch), log=lambda *a: None).model
    fit(model, train_loader(p, ft['batch_size'], 0, False), epochs=1, lr=ft['lr'], weight_decay=0.0,
        loss_fn=make_loss('pw', **pw_settings(exp, 'random')), teacher=teacher, log=lambda *a: None)
    evaluate(model, p, arch, exp['evaluate'], 'cpu', 'finetuned', 0.5, log=lambda *a: None)
"""

RESNET18_STEP = """
import torch
from pwprune.models import build_model
torch.set_num_threads(1)
model = build_model('resnet18', 1000, 3, 224).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x, y = torch.randn(64, 3, 224, 224), torch.randint(0, 1000, (64,))
for _ in range(2):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
"""


# one job on the split in argv[2]: "old" loads x whole (np.load without mmap_mode), "new" opens it
# as the pipeline does (load_prepared: a read-only memory map); prints one JSON line of MiB figures
MAPPED_SPLIT_JOB = """
import json, sys, threading
import numpy as np, torch
from torch import nn
from pwprune.data import Prepared, Split, array_path, load_prepared
from pwprune.loss import make_loss
from pwprune.models import num_outputs
from pwprune.stages.inputs import train_loader
from pwprune.train import fit

mode, data_dir, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def status():
    with open("/proc/self/status") as f:
        rows = (line.split(":", 1) for line in f)
        return {k: int(v.split()[0]) / 1024 for k, v in rows if k in FIELDS}


peaks, done = {}, threading.Event()


def sample():
    for k, v in status().items():
        peaks[k] = max(peaks.get(k, 0.0), v)


def sampler():
    while not done.wait(0.02):
        sample()


threading.Thread(target=sampler, daemon=True).start()
quiet = lambda *a: None
train = lambda p, model: fit(model, train_loader(p, batch_size, 0, False), epochs=1, lr=1e-3, weight_decay=0.0,
                             loss_fn=make_loss("ce"), log=quiet)
meta = json.load(open(data_dir + "/meta.json"))
c, s = meta["in_channels"], meta["input_size"]
model = nn.Sequential(nn.Conv2d(c, 8, 8, stride=8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_outputs(meta["num_classes"])))
# baseline: model, optimizer and one batch through the same loader and fit, on in-memory data
warm = Prepared(data_dir, meta)
rng = np.random.default_rng(1)
warm.splits["train"] = Split("train", rng.integers(0, 256, (batch_size, c, s, s), dtype=np.uint8),
                             np.arange(batch_size) % 2, np.arange(batch_size) // 2 % 2)
train(warm, model)
del warm
sample()
base = {**peaks, "VmHWM": status()["VmHWM"]}
peaks.clear()
# the job: open the data, one epoch over every sample
if mode == "old":
    p = Prepared(data_dir, meta)
    p.splits["train"] = Split("train", *(np.load(array_path(data_dir, "train", a)) for a in "xyg"))
else:
    p = load_prepared(data_dir)
x = p.splits["train"].x
assert isinstance(x, np.memmap) == (mode == "new"), type(x)
history = train(p, model)
done.set()
sample()
peak = {**peaks, "VmHWM": status()["VmHWM"]}
print("RESULT", json.dumps({"mode": mode, "base": base, "peak": peak, "epoch_s": history[-1]["seconds"],
                            "samples": len(p.splits["train"]), "x_type": type(x).__name__}))
"""


def write_synthetic_split(out_dir, n, size=128, seed=0):
    """A prepared dataset (pwprune's own writer and layout) whose train split holds n random
    RGB size x size images, 2 classes, 2 groups; val and test hold 64 each. Returns the train
    split's x size in bytes."""
    import numpy as np

    from pwprune.data import write_prepared

    rng = np.random.default_rng(seed)
    sizes = {"train": n, "val": 64, "test": 64}
    splits = {}
    for name, m in sizes.items():
        x = np.empty((m, 3, size, size), np.uint8)
        for i in range(0, m, 2048):  # in chunks: one int64 draw of 1 GB of pixels would be 8 GB
            x[i : i + 2048] = rng.integers(0, 256, x[i : i + 2048].shape, dtype=np.uint8)
        splits[name] = (x, rng.integers(0, 2, m), rng.integers(0, 2, m))
    meta = {
        "name": "synthetic",
        "kind": "synthetic",
        "num_classes": 2,
        "class_names": ["a", "b"],
        "group_names": ["g0", "g1"],
        "groups_are_classes": False,
        "in_channels": 3,
        "input_size": size,
        "mean": [0.5] * 3,
        "std": [0.29] * 3,
        "splits": list(sizes),
        "eval_splits": ["test"],
        "sizes": sizes,
        "group_counts": {k: [int((g == 0).sum()), int((g == 1).sum())] for k, (_, _, g) in splits.items()},
        "config": {"kind": "synthetic", "seed": seed},
    }
    write_prepared(out_dir, splits, meta)
    return splits["train"][0].nbytes


# (path, extra environment, what it shows), with glibc's defaults, as a pipeline job runs. (Before
# fit collected its per-sample statistics in pwprune.rows.RowBuffer, small per-batch tensors kept
# between a batch's large freed blocks made the job's private memory grow by about a batch of
# float images per batch, ~7 GB in this epoch, with either data path.)
MAPPED_SPLIT_RUNS = [
    ("old", {}, "x loaded whole (np.load)"),
    ("new", {}, "x memory-mapped"),
]


def mapped_split(n=21846, batch_size=128):
    """Old (x loaded whole) against new (x memory-mapped) on the same >= 1 GiB split -> results:
    per run, value = the job's private memory (RssAnon) peak minus its baseline."""
    out = []
    with tempfile.TemporaryDirectory(prefix="pwprune-bench-mmap-") as tmp:
        t0 = time.perf_counter()
        split_mb = write_synthetic_split(tmp, n) / 2**20
        log(f"mapped_split: wrote a {split_mb:.0f} MiB train split ({n} images) in {time.perf_counter() - t0:.0f} s")
        goal_mb = 0.1 * split_mb
        for mode, env, label in MAPPED_SPLIT_RUNS:
            proc = subprocess.run(
                [sys.executable, "-c", MAPPED_SPLIT_JOB, mode, tmp, str(batch_size)],
                cwd=REPO,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=900,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"mapped_split child ({label}) failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            r = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1].split(" ", 1)[1])
            base, peak = r["base"], r["peak"]
            anon = peak["RssAnon"] - base["RssAnon"]
            hwm = peak["VmHWM"] - base["VmHWM"]
            shared = peak["RssFile"] + peak.get("RssShmem", 0.0) - base["RssFile"] - base.get("RssShmem", 0.0)
            log(
                f"mapped_split ({label}): epoch {r['epoch_s']:.0f} s; minus baseline: private (RssAnon) "
                f"{anon:+.0f} MiB, VmHWM {hwm:+.0f} MiB, shared file pages (RssFile) {shared:+.0f} MiB"
            )
            out.append(
                result(
                    "peak_rss_mb",
                    anon,
                    "MiB",
                    f"< 10% of split ({goal_mb:.0f} MiB)",
                    anon < goal_mb,
                    case=f"fine-tuning job, 1 epoch: {label}",
                    measure="private (RssAnon) peak - baseline",
                    split_mb=round(split_mb),
                    samples=r["samples"],
                    batch=batch_size,
                    vmhwm_minus_base_mb=round(hwm),
                    rss_file_minus_base_mb=round(shared),
                    baseline_vmhwm_mb=round(base["VmHWM"]),
                    epoch_s=round(r["epoch_s"], 1),
                )
            )
    return out


def child_peak_rss_mb(code):
    """Peak RSS (MB) of a fresh interpreter running code: the child's own VmHWM, read by the
    child at its end. (Its rusage would not do: on Linux exec carries the parent's RSS
    high-water mark into the child's ru_maxrss, so every child would report this process's peak.)"""
    probe = code + "\nprint('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    kib = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("VmHWM ")][-1]
    return int(kib) / 1024


def from_run(run):
    """Largest max_rss over the fine-tuning jobs of a completed run -> (MB, job) or None."""
    tsvs = sorted((run["root"] / "benchmarks/out" / run["exp"]).glob("seed*/finetune/*/*.tsv"))
    best = None
    for t in tsvs:
        lines = t.read_text().splitlines()
        row = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
        try:
            mb = float(row["max_rss"])
        except (KeyError, ValueError):
            continue
        if best is None or mb > best[0]:
            best = (mb, str(t.relative_to(run["root"] / "benchmarks/out")))
    return best, len(tsvs)


def run(names, opts):
    from . import pipeline

    out = mapped_split()
    if pipeline._run or opts.run_dir:
        r = pipeline.completed_run(opts)
        best, n = from_run(r)
        if best:
            out.append(
                result(
                    "peak_rss_mb",
                    best[0],
                    "MB",
                    None,
                    None,
                    case=f"largest {r['exp']} fine-tuning job (snakemake benchmark max_rss)",
                    job=best[1],
                    jobs=n,
                )
            )
            log(f"peak_rss_mb ({r['exp']} fine-tuning jobs): {best[0]:.0f} MB ({best[1]})")
    mb = child_peak_rss_mb(DEFAULT_FINETUNE)
    out.append(
        result(
            "peak_rss_mb",
            mb,
            "MB",
            None,
            None,
            case="default fine-tuning job (subprocess: prepare, prune 0.5, PW fit 1 epoch, evaluate)",
        )
    )
    log(f"peak_rss_mb (default fine-tuning, subprocess): {mb:.0f} MB")
    mb = child_peak_rss_mb(RESNET18_STEP)
    out.append(
        result(
            "peak_rss_mb",
            mb,
            "MB",
            None,
            None,
            case="resnet18 training step (subprocess)",
            model="resnet18",
            batch=64,
            input_size=224,
        )
    )
    log(f"peak_rss_mb (resnet18 step, batch 64): {mb:.0f} MB")
    return out
