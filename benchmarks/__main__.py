"""CLI: python -m benchmarks [--json] [--quick] [--only NAME[,NAME]] [case options]."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback

from . import BENCHMARKS, log

ORDER = ["loss_overhead", "pruning", "pipeline", "memory", "throughput"]  # memory reads the pipeline's run


def _csv(kind):
    return lambda s: [kind(v) for v in s.split(",") if v]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "--json", action="store_true", help="one JSON object per line on stdout (the table then goes to stderr)"
    )
    p.add_argument(
        "--only", type=_csv(str), default=None, metavar="NAME[,NAME]", help=f"run a subset: {', '.join(BENCHMARKS)}"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="skip the default end-to-end run "
        "(minutes); the pipeline figures then come from a smoke run, and ResNet-18 latency "
        "is measured at the goal target 0.75 only, and the PW overhead on the default's data "
        "with at most 6 renderings per training scan",
    )
    p.add_argument(
        "--run-dir",
        default=None,
        help="a completed default run (repository root) to "
        "measure the dry run and job figures on, instead of running one",
    )
    p.add_argument(
        "--before-run-dir",
        default=None,
        help="startup_share: a second completed run (e.g. of an older commit) split with the same "
        "measured start-up, printed beside the first",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="override the repeat count of the timing loops (fewer = faster, noisier)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the in-process timings "
        "(default 1, what a pipeline job gets; more oversubscribe a shared machine)",
    )
    p.add_argument(
        "--models",
        type=_csv(str),
        default=["resnet18", "resnet56"],
        help="latency cases: resnet18 (224 px), resnet56 (CIFAR, 32 px)",
    )
    p.add_argument("--batches", type=_csv(int), default=[1, 32], help="latency batch sizes")
    p.add_argument("--methods", type=_csv(str), default=["random", "magnitude", "taylor", "autobot"])
    p.add_argument("--targets", type=_csv(float), default=[0.5, 0.75, 0.9])
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(BENCHMARKS))
    if unknown:
        p.error(f"--only: unknown name(s) {', '.join(unknown)}; valid: {', '.join(BENCHMARKS)}")
    return args


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


def table(results):
    """Readable fixed-width table: name, case fields, value, unit, goal, met."""
    head = ["name", "case", "value", "unit", "goal", "met"]
    rows = []
    for r in results:
        case = " ".join(f"{k}={_fmt(v)}" for k, v in r.items() if k not in ("name", "value", "unit", "goal", "met"))
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        rows.append([r["name"], case, _fmt(r["value"]), r["unit"], r["goal"] or "", met])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def json_line(r):
    return json.dumps(r, allow_nan=True, default=str)


def main(argv=None):
    args = parse_args(argv)
    names = args.only or list(BENCHMARKS)
    modules = [m for m in ORDER if any(BENCHMARKS[n] == m for n in names)]
    import torch

    torch.set_num_threads(args.threads)
    header = (
        f"pwprune benchmarks, {datetime.datetime.now().isoformat(timespec='seconds')}, "
        f"{platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), names: {', '.join(names)}" + (" (quick)" if args.quick else "")
    )
    log(header)
    results, failed, t0 = [], [], time.perf_counter()
    for m in modules:
        # one area failing (e.g. a Snakemake run) must not lose the figures of the others
        try:
            mod = importlib.import_module(f"benchmarks.{m}")
            for r in mod.run([n for n in names if BENCHMARKS[n] == m], args):
                results.append(r)
                if args.json:
                    print(json_line(r), flush=True)
        except Exception:
            failed.append(m)
            log(f"benchmarks.{m} failed:\n{traceback.format_exc()}")
    log(f"done in {time.perf_counter() - t0:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    out = sys.stderr if args.json else sys.stdout
    print(header, file=out)
    print(table(results), file=out, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
