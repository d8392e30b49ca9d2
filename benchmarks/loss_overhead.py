"""What the PW loss costs in fine-tuning: epoch time of PW against CE on the same model, data and
batches, with the teacher's outputs cached (non-augmented data) and computed on the fly by a
frozen dense model (augmented data)."""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

from . import log, result

CACHED_GOAL = 1.05


def default_experiment():
    """The dataset and fine-tuning settings of params.yaml's `default` experiment."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    return cfg["experiments"]["default"]


class TimedTeacher:
    """Wraps a teacher callable and sums the seconds spent in it."""

    def __init__(self, teacher):
        self.teacher, self.seconds = teacher, 0.0

    def __call__(self, x, idx):
        t0 = time.perf_counter()
        out = self.teacher(x, idx)
        self.seconds += time.perf_counter() - t0
        return out


def _epoch(model0, dataset, batch_size, loss_fn, teacher, seed):
    """Seconds of one fit() epoch on a fresh copy of model0 over a fresh loader with a fixed seed,
    so CE and PW see the same batches (and, with augmentation, the same random views)."""
    import torch

    from pwprune.train import fit, make_loader

    model = copy.deepcopy(model0)
    loader = make_loader(dataset, batch_size=batch_size, shuffle=True, seed=seed)
    torch.manual_seed(seed)  # augmentation draws from the global RNG
    hist = fit(
        model, loader, epochs=1, lr=1e-3, weight_decay=5e-4, loss_fn=loss_fn, teacher=teacher, log=lambda *a: None
    )
    return hist[0]["seconds"]


def measure(dataset_cfg, model_name="small_cnn", batch_size=64, pw=None, repeats=7, threads=1):
    """-> results for pw_overhead_cached and pw_overhead_on_the_fly. Epochs alternate CE, PW
    (so load drift hits both alike); the ratio is the median of the per-pair ratios."""
    import torch

    from pwprune.data import SplitDataset, load_prepared, prepare
    from pwprune.loss import CachedTeacher, FrozenTeacher, make_loss, teacher_outputs
    from pwprune.models import arch_dict, build_from_arch
    from pwprune.train import make_loader

    pw = pw or {"min_weight": 0.5, "gamma": 1.0}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # what a pipeline job gets (resources.*.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepare(dict(dataset_cfg), raw_root=None, out_dir=tmp, log=lambda *a: None)
            prepared = load_prepared(tmp)
            meta = prepared.meta
            torch.manual_seed(0)
            model0 = build_from_arch(
                arch_dict(model_name, meta["num_classes"], meta["in_channels"], meta["input_size"])
            )
            dense = copy.deepcopy(model0)  # stands in for the dense model: same cost
            train = prepared.splits["train"]
            plain, augmented = SplitDataset(train, meta, augment=False), SplitDataset(train, meta, augment=True)
            logits = teacher_outputs(dense, make_loader(plain, 512, shuffle=False, seed=0))
            ce, pwl = make_loss("ce"), make_loss("pw", **pw)
            case = {
                "model": model_name,
                "dataset": meta["name"],
                "batch": batch_size,
                "n_train": len(plain),
                "threads": threads,
                "repeats": repeats,
            }
            out = []
            for name, ds, make_teacher in (
                ("pw_overhead_cached", plain, lambda: CachedTeacher(logits)),
                ("pw_overhead_on_the_fly", augmented, lambda: FrozenTeacher(dense)),
            ):
                _epoch(model0, ds, batch_size, ce, None, 0)  # warm-up (allocator, first-touch)
                ce_s, pw_s, teacher_s = [], [], []
                for r in range(repeats):
                    ce_s.append(_epoch(model0, ds, batch_size, ce, None, r))
                    teacher = TimedTeacher(make_teacher())
                    pw_s.append(_epoch(model0, ds, batch_size, pwl, teacher, r))
                    teacher_s.append(teacher.seconds)
                ratio = statistics.median(p / c for p, c in zip(pw_s, ce_s))
                ce_m, pw_m, t_m = map(statistics.median, (ce_s, pw_s, teacher_s))
                fields = dict(case, ce_epoch_s=ce_m, pw_epoch_s=pw_m)
                if name == "pw_overhead_cached":
                    out.append(
                        result(name, ratio, "x CE epoch time", f"<= {CACHED_GOAL}", ratio <= CACHED_GOAL, **fields)
                    )
                else:
                    # share of the extra time (PW - CE) that is the teacher's forward pass
                    extra = pw_m - ce_m
                    out.append(
                        result(
                            name,
                            ratio,
                            "x CE epoch time",
                            None,
                            None,
                            **fields,
                            teacher_s=t_m,
                            teacher_share_of_overhead=(t_m / extra) if extra > 0 else float("nan"),
                            teacher_share_of_epoch=t_m / pw_m,
                        )
                    )
                log(f"{name}: PW/CE {ratio:.3f} (CE {ce_m:.3f} s, PW {pw_m:.3f} s, teacher {t_m:.3f} s per epoch)")
            return out
    finally:
        torch.set_num_threads(old_threads)


QUICK_TRAIN_COPIES = 6  # --quick: at most this many renderings of each training scan


def run(names, opts):
    from pwprune.config import pw_settings

    exp = default_experiment()
    repeats = opts.repeats or 7
    dataset = dict(exp["dataset"])
    if opts.quick:
        # a quarter of the default's 24 renderings: the same images and model, a shorter epoch
        dataset["train_copies"] = min(dataset.get("train_copies", 1), QUICK_TRAIN_COPIES)
    res = measure(
        dataset,
        exp["model"],
        exp["finetune"]["batch_size"],
        pw_settings(exp, "random"),
        repeats=repeats,
        threads=exp.get("resources", {}).get("finetune", {}).get("threads", 1),
    )
    return [r for r in res if r["name"] in names]
