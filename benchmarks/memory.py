"""Peak resident memory: the largest fine-tuning job of a completed run (Snakemake's benchmark
TSVs, max_rss) and, each in a fresh subprocess (its own VmHWM), a
fine-tuning job of the default experiment and a ResNet-18 training step at batch 64, 224 px."""

from __future__ import annotations

import subprocess
import sys
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

    out = []
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
