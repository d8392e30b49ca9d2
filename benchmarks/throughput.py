"""Input and training throughput (issue 13, items 2 and 3), on whatever device is present.

input_samples_s: samples/s delivered to training, per-sample path (SplitDataset in a DataLoader,
    what every job used before: convert, normalise and augment one image at a time) against the
    batched path (pwprune.data.dataset.Batches: one gather per batch, then crop, flip, convert
    and normalise vectorised over the batch on the device), at 32 and 128 px, with and without
    augmentation, side by side in one run.
train_samples_s: samples/s of training steps (forward, loss, backward, AdamW step) of
    ResNet-18 at 128 px with batches from Batches, in fp32 and in bf16 autocast (on CUDA also fp16
    with a GradScaler, each precision in the default and the channels-last layout), through
    pwprune.train.fit itself. On a CPU also the default experiment's small_cnn at 12 px, batch 128,
    in fp32, in the default and the channels-last layout (`channels_last`), with the layouts
    alternated over several timed epochs and each one's best kept.
"""

from __future__ import annotations

import os
import time

import numpy as np

from . import log, result


def _split(n, size, seed=0):
    from pwprune.data import Split

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    return Split("train", x, rng.integers(0, 2, n).astype(np.int64), rng.integers(0, 2, n).astype(np.int64))


def _meta(size):
    return {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": size}


def _rate(loader, device, passes):
    import torch

    best = 0.0
    for _ in range(passes):
        t0, n = time.perf_counter(), 0
        for x, *_ in loader:
            x = x.to(device)
            n += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def input_samples_s(opts, device):
    import torch

    from pwprune.data.dataset import Batches, SplitDataset
    from pwprune.train import make_loader

    out = []
    passes = 2 if opts.quick else 3
    for size, n in ((32, 8192), (128, 2048)):
        split, meta = _split(n, size), _meta(size)
        for augment in (False, True):
            gen = torch.Generator().manual_seed(1)
            old = make_loader(SplitDataset(split, meta, augment=augment, generator=gen), 256, True, 0)
            new = Batches(split, meta, 256, shuffle=True, seed=0, augment=augment, device=device)
            r_old, r_new = _rate(old, device, passes), _rate(new, device, passes)
            case = f"{size} px, {'augmented' if augment else 'no augmentation'}, batch 256, {device.type}"
            log(f"input_samples_s ({case}): per-sample {r_old:,.0f}/s, batched {r_new:,.0f}/s ({r_new / r_old:.1f}x)")
            out.append(
                result(
                    "input_samples_s",
                    r_new,
                    "samples/s",
                    None,
                    None,
                    case=case,
                    per_sample_path=round(r_old),
                    speedup=round(r_new / r_old, 2),
                )
            )
    return out


def _fit_rate(arch, classes, split, size, batch, device, epochs, augment, **fit_options):
    """Samples/s of the last epoch of pwprune.train.fit (CE) training a fresh `arch` on `split`."""
    import torch

    from pwprune.data.dataset import Batches
    from pwprune.loss import make_loss
    from pwprune.models import build_model
    from pwprune.train import fit

    torch.manual_seed(0)
    model = build_model(arch, classes, 3, size)
    loader = Batches(split, _meta(size), batch, shuffle=True, seed=0, augment=augment, device=device)
    history = fit(
        model, loader, epochs=epochs, loss_fn=make_loss("ce"), device=device, log=lambda *a: None, **fit_options
    )
    return len(split) / history[-1]["seconds"]


def _rate_result(rate, base, base_name, case, precision, channels_last, ratio_key):
    """Log one train_samples_s case with its ratio to `base` (named base_name) -> its result."""
    ratio = rate / base
    layout = ", channels_last" if channels_last else ""
    log(f"train_samples_s ({case}, {precision}{layout}): {rate:,.0f} samples/s ({ratio:.2f}x {base_name})")
    fields = {"case": case, "precision": precision, "channels_last": channels_last, ratio_key: round(ratio, 2)}
    return result("train_samples_s", rate, "samples/s", None, None, **fields)


def train_samples_s(opts, device, cases=None):
    """cases: (precision, channels_last) pairs; by default fp32 and bf16 on a CPU, and on CUDA fp32,
    bf16 and fp16 (with its GradScaler), each in the default and the channels-last layout."""
    import torch

    size = 128
    # on a CPU without native bf16 (no AVX512-BF16/AMX) bf16 matmuls are emulated and slow: keep
    # the CPU case small
    batch, batches = (32, 2 if opts.quick else 4) if device.type == "cpu" else (256, 16 if opts.quick else 32)
    split = _split(batch * batches, size)
    if cases is None:
        cases = [("fp32", False), ("bf16", False)]
        if device.type == "cuda":
            cases = [(p, layout) for p in ("fp32", "bf16", "fp16") for layout in (False, True)]
    out, rates = [], {}
    for precision, channels_last in cases:
        # epoch 1 warms up (allocator, kernels), epoch 2 is timed
        rates[precision, channels_last] = _fit_rate(
            "resnet18",
            2,
            split,
            size,
            batch,
            device,
            epochs=2,
            augment=True,
            lr=1e-3,
            weight_decay=0.0,
            precision=precision,
            channels_last=channels_last,
        )
    where = device.type
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
        where = f"cpu ({'native bf16' if ('avx512_bf16' in flags or 'amx_bf16' in flags) else 'no native bf16'})"
    base = rates.get(("fp32", False)) or next(iter(rates.values()))
    for (precision, channels_last), rate in rates.items():
        case = f"resnet18 128 px, batch {batch}, {where}"
        out.append(_rate_result(rate, base, "fp32", case, precision, channels_last, "vs_fp32"))
    if device.type == "cpu":
        out += small_cnn_layouts(opts, device)
    return out


def small_cnn_layouts(opts, device):
    """Training samples/s of the default experiment's model (small_cnn, 12 px, 10 classes, batch
    128, fp32, one thread as its jobs run) in the default and the channels-last layout, through
    pwprune.train.fit: the two layouts alternate, one epoch each, and each keeps its best epoch."""
    import torch

    size, batch, batches = 12, 128, 20 if opts.quick else 50
    rng = np.random.default_rng(0)
    n = batch * batches
    from pwprune.data import Split

    split = Split(
        "train", rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), rng.integers(0, 10, n), rng.integers(0, 2, n)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = {False: 0.0, True: 0.0}
        for _ in range(3 if opts.quick else 5):
            for channels_last in (False, True):
                rate = _fit_rate(
                    "small_cnn",
                    10,
                    split,
                    size,
                    batch,
                    device,
                    epochs=1,
                    augment=False,
                    lr=3e-3,
                    weight_decay=5e-4,
                    channels_last=channels_last,
                )
                best[channels_last] = max(best[channels_last], rate)
    finally:
        torch.set_num_threads(threads)
    case = f"small_cnn 12 px, batch {batch}, 1 thread, cpu"
    out = []
    for channels_last, rate in best.items():
        out.append(
            _rate_result(rate, best[False], "the default layout", case, "fp32", channels_last, "vs_default_layout")
        )
    return out


def run(names, opts):
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = []
    if "input_samples_s" in names:
        out += input_samples_s(opts, device)
    if "train_samples_s" in names:
        out += train_samples_s(opts, device)
    return out
