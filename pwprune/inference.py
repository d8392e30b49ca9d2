"""What needs the model itself: its per-sample outputs over a loader, its MACs and parameter count,
and its latency. The checkpoint-writing jobs call the first two with the model in memory
(pwprune.outputs), the latency jobs the last (pwprune.stages.latency); every other metric is
computed from the outputs, without the model (pwprune.metrics)."""

import copy
import statistics
import time


def predict(model, loader, device="cpu"):
    """Run `model` over a loader of (x, y, g, idx) batches -> (logits, labels, groups) on CPU.

    Single-logit outputs come back as shape (N,), multi-class as (N, C). Rows are in loader
    order; the model's train/eval mode is restored afterwards.
    """
    import torch

    from pwprune.rows import RowBuffer, expected_rows

    was_training = model.training
    model.eval()
    logits, labels, groups = (RowBuffer(expected_rows(loader)) for _ in range(3))
    try:
        with torch.no_grad():
            for x, y, g, _idx in loader:
                out = model(x.to(device)).float().cpu()
                if out.ndim == 2 and out.shape[1] == 1:
                    out = out[:, 0]
                logits.append(out)
                labels.append(y.cpu().long())
                groups.append(g.cpu().long())
    finally:
        model.train(was_training)
    if not len(logits):
        raise ValueError("predict: loader yielded no batches; evaluate a non-empty split")
    return logits.tensor(), labels.tensor(), groups.tensor()


def count_macs_params(model, example_input):
    """(MACs per sample, parameter count) via Torch-Pruning's counter, with attention's matrix
    products (pwprune.attention.count_macs), on a CPU copy so the caller's model (possibly on
    GPU, possibly in train mode) is untouched."""
    from pwprune.attention import macs_params_on_device  # lazy: only evaluation needs it

    cpu_model = copy.deepcopy(model).cpu().eval()
    return macs_params_on_device(cpu_model, example_input.detach().cpu())


def latency_ms(model, example_input, repeats=20, warmup=5, threads=1):
    """Median latency per sample in milliseconds, on the model's device, with `threads` CPU threads.

    The model runs in eval mode without grad; the batch is `example_input` as given (moved to the
    model's device), and the time of one forward pass is divided by its batch size. Warmup passes
    are discarded (allocator, kernel and cuDNN algorithm selection), the median of `repeats`
    resists the noise of a shared machine. torch computes with exactly `threads` threads while it
    measures (torch.set_num_threads, restored afterwards), whatever the job is allotted, so the
    same checkpoint gives comparable figures under any --cores or cluster allocation (the caller
    records the count: the `evaluate.latency_threads` setting). A model on CUDA is timed on its GPU:
    CUDA runs kernels asynchronously, so each timed pass ends with torch.cuda.synchronize (and the
    warm-up with one before the first). The model's device and train/eval mode are restored."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"latency_ms: repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"latency_ms: threads must be an integer >= 1 (evaluate.latency_threads), got {threads!r}")
    import torch

    params = list(model.parameters()) + list(model.buffers())
    device = params[0].device if params else torch.device("cpu")
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    was_training, saved_threads = model.training, torch.get_num_threads()
    x = example_input.detach().to(device)
    try:
        torch.set_num_threads(threads)
        model.eval()
        times = timed_passes(model, x, repeats, warmup, synchronize)
    finally:
        torch.set_num_threads(saved_threads)
        model.train(was_training)
    return 1000.0 * statistics.median(times) / x.shape[0]


def timed_passes(model, x, repeats, warmup, synchronize=None):
    """Seconds of each of `repeats` forward passes of `model` on `x` without grad, after `warmup`
    untimed ones. synchronize: called after the warm-up and at the end of each timed pass, inside
    its time (torch.cuda.synchronize for a model on CUDA, whose kernels run asynchronously; None on
    a CPU)."""
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        if synchronize is not None:
            synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            if synchronize is not None:
                synchronize()
            times.append(time.perf_counter() - t0)
    return times
