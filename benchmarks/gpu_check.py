"""The GPU check (issue 33): every CUDA path in one command, for the day a GPU is lent.

    python -m benchmarks.gpu_check [--out REPORT.json] [--budget-s 540] [--dry-run] [--only NAME[,NAME]]

Runs the items below in this order, each in its own process with its own time limit inside the
overall budget (default 540 s: the whole check fits in 10 minutes of device time), and writes one
JSON report (default benchmarks/out/gpu_check.json) after every item, so a check cut short still
leaves what it finished. The report holds every figure and every failure; a table of it is
printed at the end. Exit status 0 when no item failed.

  cuda_tests          the CUDA-only tests: pytest -m "cuda and not e2e" over tests/
  smoke_cuda          tests/smoke.yaml end to end with `device: cuda`, the real snakemake CLI with
                      profiles/local (one GPU job at a time) in a temporary copy; also counts the
                      jobs that ask for a `gpu` under `device: cuda` and `device: auto`
  mixed_precision     one fit, one Taylor prune and one fine-tuning of ResNet-20 with fp16
                      (GradScaler) and with bf16 (and fp32 for reference)
  cores_independence  tests/test_reproducibility.py::test_weights_do_not_depend_on_cores_on_cuda:
                      --cores 1 and --cores 2 give the same weights on CUDA
  throughput          training samples/s of ResNet-18 at 128 px: fp32, bf16 and fp16, each in the
                      default and the channels-last layout (benchmarks.throughput)

Without CUDA (a CPU-only torch, or no device visible) or with --dry-run it runs nothing: it lists
each item with what it would run, marked skipped with the reason, and still writes the report.
It needs a clone of the repository (the tests, the workflow) and this project's environment with
a CUDA build of torch; it never imports the test suite's helpers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORMAT = "pwprune-gpu-check/1"
STATUSES = ("passed", "failed", "timeout", "skipped")
DEFAULT_OUT = REPO / "benchmarks" / "out" / "gpu_check.json"
CORES_TEST = "tests/test_reproducibility.py::test_weights_do_not_depend_on_cores_on_cuda"
SMOKE_TARGET = "results/figures/all"
RESERVE_S = 5.0  # kept back from the budget for writing the report

# name -> (what it checks, its time limit in seconds)
ITEMS = {
    "cuda_tests": ("the CUDA-only tests (pytest -m 'cuda and not e2e')", 150),
    "smoke_cuda": ("tests/smoke.yaml end to end with device: cuda (snakemake, profiles/local)", 300),
    "mixed_precision": ("one fit, prune and fine-tuning of ResNet-20 with fp16 (GradScaler) and bf16", 120),
    "cores_independence": ("--cores 1 vs --cores 2 on CUDA: bit-identical dense weights", 180),
    "throughput": ("training samples/s, ResNet-18 128 px: fp32, bf16, fp16 x default/channels-last", 120),
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- what each item runs


def commands(name: str, python: str = sys.executable, device: str = "cuda") -> list[list[str]]:
    """The command lines item `name` runs (in the repository, or in the smoke run's copy); `device`
    is the smoke run's (another than cuda only to rehearse the check on a CPU)."""
    junit = f"<tmp>/{name}.xml"
    if name == "cuda_tests":
        return [[python, "-m", "pytest", "-m", "cuda and not e2e", "tests/", "-q", f"--junitxml={junit}"]]
    if name == "cores_independence":
        return [[python, "-m", "pytest", CORES_TEST, "-q", f"--junitxml={junit}"]]
    if name == "smoke_cuda":
        config = ["--configfile", "tests/smoke.yaml"]
        return [["snakemake", "-n", SMOKE_TARGET, *config, "--config", f"device={d}"] for d in (device, "auto")] + [
            ["snakemake", SMOKE_TARGET, *config, "--config", f"device={device}", "--profile", "profiles/local"]
        ]
    if name in ("mixed_precision", "throughput"):
        return [[python, "-m", "benchmarks.gpu_check", "--run-item", name, "--item-out", f"<tmp>/{name}.json"]]
    raise ValueError(f"unknown item {name!r}; valid: {', '.join(ITEMS)}")


def _run(cmd, cwd, timeout, env=None):
    """(returncode, stdout, stderr, seconds, timed_out); the whole process group is killed at the
    timeout (snakemake's jobs with it)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout))
        return proc.returncode, out, err, time.perf_counter() - t0, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return proc.returncode, out, err, time.perf_counter() - t0, True


def _tail(text, n=3000):
    text = text or ""
    return text if len(text) <= n else "..." + text[-n:]


def _errors(text, n=6000):
    """Snakemake's output from its first error on (a failed job's traceback and log, which
    show-failed-logs prints), else its tail."""
    lines = (text or "").splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(("Error in rule", "ERROR", "Traceback"))), None)
    if first is None:
        return _tail(text, n)
    found = "\n".join(lines[max(0, first - 3) :])
    return found if len(found) <= n else found[:n] + "..."


def _env():
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def junit_results(path) -> tuple[dict, list[str]]:
    """A pytest JUnit report -> (counts {tests, passed, failed, skipped}, one line per test that
    failed, erred or was skipped: `file::test: message`)."""
    counts = {"tests": 0, "passed": 0, "failed": 0, "skipped": 0}
    lines = []
    for case in ET.parse(path).getroot().iter("testcase"):
        counts["tests"] += 1
        where = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
            continue
        kind = "skipped" if outcome.tag == "skipped" else "failed"
        counts[kind] += 1
        message = (outcome.get("message") or outcome.text or "").strip().splitlines()
        lines.append(f"{kind}: {where}: {message[0][:500] if message else ''}")
    return counts, lines


def _pytest_item(name, tmp, timeout):
    cmd = [c.replace("<tmp>", str(tmp)) for c in commands(name)[0]]
    rc, out, err, seconds, timed_out = _run(cmd, REPO, timeout, _env())
    junit = Path(tmp) / f"{name}.xml"
    counts, failures = junit_results(junit) if junit.exists() else ({"tests": 0}, [])
    item = {"seconds": seconds, "figures": counts, "failures": failures}
    if timed_out:
        return {**item, "status": "timeout", "reason": f"cut at {timeout:.0f} s", "failures": failures + [_tail(out)]}
    if counts.get("tests", 0) == 0:
        return {**item, "status": "failed", "reason": f"pytest selected no test (exit {rc})", "failures": [_tail(out)]}
    if rc != 0 or counts["failed"] or counts["skipped"]:
        # on a GPU no CUDA test may skip: a skip means the test did not see the device
        reason = f"{counts['failed']} failed, {counts['skipped']} skipped of {counts['tests']} (pytest exit {rc})"
        return {**item, "status": "failed", "reason": reason, "failures": failures or [_tail(out + err)]}
    return {**item, "status": "passed", "reason": None}


def _gpu_jobs(dry_run_output: str) -> int:
    return sum(1 for line in dry_run_output.splitlines() if line.strip().startswith("resources:") and "gpu=1" in line)


def _smoke_item(name, tmp, timeout, device="cuda"):
    """The smoke configuration on CUDA in a fresh copy: the `gpu` requests (dry runs), then the run."""
    import csv

    from .pipeline import copy_repo

    t0 = time.perf_counter()
    root = copy_repo(Path(tmp) / "repo")
    env = _env()
    figures, failures = {}, []
    dry_device, dry_auto, real = commands(name, device=device)
    for d, cmd in ((device, dry_device), ("auto", dry_auto)):
        rc, out, err, _, _ = _run(cmd, root, 120, env)
        figures[f"gpu_jobs_device_{d}"] = _gpu_jobs(out + err)
        if rc != 0:
            failures.append(f"dry run with device={d} failed ({rc}): {_tail(err)}")
    if figures["gpu_jobs_device_auto"] != figures[f"gpu_jobs_device_{device}"]:
        failures.append(
            f"device: auto asked for {figures['gpu_jobs_device_auto']} GPU jobs, device: {device} for "
            f"{figures[f'gpu_jobs_device_{device}']}: pwprune.config.cuda_present() disagrees with torch here"
        )
    left = timeout - (time.perf_counter() - t0)
    rc, out, err, seconds, timed_out = _run(real, root, left, env)
    figures["run_s"] = round(seconds, 1)
    done = [line for line in (out + err).splitlines() if "steps (" in line and "done" in line]
    figures["steps_done"] = done[-1].strip() if done else None
    metrics = root / "results" / "metrics.csv"
    if metrics.exists():
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
        envs = sorted({r.get("environment", "") for r in rows})
        figures["metric_rows"] = len(rows)
        figures["environments"] = envs
        elsewhere = [e for e in envs if not e.startswith(f"{device.split(':')[0]} ")]
        if elsewhere:
            failures.append(f"metrics computed on another device than {device}: {elsewhere}")
    latency = sorted(float(r["latency_ms"]) for r in rows if r.get("latency_ms")) if metrics.exists() else []
    if latency:
        figures["latency_ms_min_median_max"] = [latency[0], latency[len(latency) // 2], latency[-1]]
    status, reason = "passed", None
    if timed_out:
        status, reason = "timeout", f"cut at {left:.0f} s"
        failures.append(_tail(err))
    elif rc != 0:
        status, reason = "failed", f"snakemake exit {rc}"
        failures.append(_errors(err))
    elif not (root / SMOKE_TARGET).exists():
        status, reason = "failed", f"no {SMOKE_TARGET} after the run"
    elif failures:
        status, reason = "failed", failures[0][:200]
    return {
        "status": status,
        "reason": reason,
        "seconds": time.perf_counter() - t0,
        "figures": figures,
        "failures": failures,
    }


def _child_item(name, tmp, timeout):
    out_file = Path(tmp) / f"{name}.json"
    cmd = [c.replace("<tmp>", str(tmp)) for c in commands(name)[0]]
    rc, out, err, seconds, timed_out = _run(cmd, REPO, timeout, _env())
    if timed_out:
        return {"status": "timeout", "reason": f"cut at {timeout:.0f} s", "seconds": seconds, "failures": [_tail(err)]}
    if rc != 0 or not out_file.exists():
        return {"status": "failed", "reason": f"exit {rc}", "seconds": seconds, "failures": [_tail(err, 6000)]}
    got = json.loads(out_file.read_text())
    failures = got.get("failures", [])
    return {
        "status": "failed" if failures else "passed",
        "reason": failures[0][:200] if failures else None,
        "seconds": seconds,
        "figures": got.get("figures", {}),
        "failures": failures,
    }


# ---------------------------------------------------------------- the in-process items (--run-item)


def mixed_precision(device="cuda", precisions=("fp32", "fp16", "bf16"), n=1024):
    """fp32, fp16 (GradScaler) and bf16 on CUDA: for each, fit ResNet-20 one epoch, prune it with
    Taylor to half its MACs (scores with the PW loss against the fitted model's cached outputs),
    and fine-tune the pruned model one epoch. Figures: seconds, losses, achieved reduction."""
    import numpy as np
    import torch

    from pwprune.data import Split
    from pwprune.data.dataset import Batches
    from pwprune.loss import CachedTeacher, make_loss, teacher_outputs
    from pwprune.models import build_model
    from pwprune.pruning import prune_to_target
    from pwprune.stages.inputs import set_deterministic, set_tf32
    from pwprune.train import fit

    device = torch.device(device)
    set_deterministic(True)
    set_tf32(False)
    rng = np.random.default_rng(0)
    size = 32
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 200, (n, 3, size, size)).astype(np.uint8)
    x[y == 1, 0] += 50
    split = Split("train", x, y.astype(np.int64), rng.integers(0, 2, n).astype(np.int64))
    meta = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": size}
    figures, failures = {}, []
    for precision in precisions:
        try:
            torch.manual_seed(0)
            model = build_model("resnet20", 2, 3, size)
            loader = Batches(split, meta, 128, shuffle=True, seed=0, augment=True, device=device)
            t0 = time.perf_counter()
            kw = dict(weight_decay=0.0, device=device, precision=precision, log=lambda *a: None)
            fitted = fit(model, loader, epochs=1, lr=1e-3, loss_fn=make_loss("ce"), **kw)
            t1 = time.perf_counter()
            teacher = CachedTeacher(teacher_outputs(model, Batches(split, meta, 256, device=device), device))
            pruned = prune_to_target(
                model,
                "taylor",
                0.5,
                torch.zeros(1, 3, size, size, device=device),
                loader=loader,
                loss_fn=make_loss("pw"),
                teacher=teacher,
                device=device,
                log=lambda *a: None,
                steps=2,
                batches_per_step=1,
                lr=0.001,
            )
            t2 = time.perf_counter()
            tuned = fit(pruned.model, loader, epochs=1, lr=1e-3, loss_fn=make_loss("pw"), teacher=teacher, **kw)
            t3 = time.perf_counter()
            finite = all(torch.isfinite(t).all() for t in pruned.model.state_dict().values() if t.is_floating_point())
            figures[precision] = {
                "fit_s": round(t1 - t0, 2),
                "prune_s": round(t2 - t1, 2),
                "finetune_s": round(t3 - t2, 2),
                "fit_loss": fitted[-1]["loss"],
                "finetune_loss": tuned[-1]["loss"],
                "achieved_reduction": pruned.achieved_reduction,
                "within_tolerance": bool(pruned.within_tolerance),
                "grad_scaler": precision == "fp16",
            }
            if not finite or not all(np.isfinite(h["loss"]) for h in fitted + tuned):
                failures.append(f"{precision}: non-finite loss or weights")
            if not pruned.within_tolerance:
                failures.append(f"{precision}: pruning missed its target ({pruned.achieved_reduction:.3f} vs 0.5)")
        except Exception:
            failures.append(f"{precision}: {traceback.format_exc()[-3000:]}")
    return {"figures": figures, "failures": failures}


def throughput(device="cuda", cases=None):
    """benchmarks.throughput.train_samples_s on CUDA, every precision in both memory layouts."""
    import torch

    from .throughput import train_samples_s

    rows = train_samples_s(argparse.Namespace(quick=True), torch.device(device), cases)
    figures = {
        f"{r['precision']}{' channels_last' if r['channels_last'] else ''}": {
            "samples_s": round(r["value"], 1),
            "vs_fp32": r["vs_fp32"],
        }
        for r in rows
    }
    figures["case"] = rows[0]["case"] if rows else None
    return {"figures": figures, "failures": []}


IN_PROCESS = {"mixed_precision": mixed_precision, "throughput": throughput}


# ---------------------------------------------------------------- the report


def environment() -> dict:
    """torch, CUDA and the device this check runs on, and why it would run dry."""
    import torch

    from pwprune.config import cuda_present

    env = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torch_cuda": torch.version.cuda,
        "cuda_available": bool(torch.cuda.is_available()),
        # pwprune.config's torch-free probe (what `device: auto` asks for at Snakemake start-up)
        "cuda_present_probe": cuda_present(),
        "device": None,
    }
    if env["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        env["device"] = {
            "name": p.name,
            "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "cudnn": torch.backends.cudnn.version(),
        }
    return env


def dry_reason(env: dict, dry_run: bool) -> str | None:
    if dry_run:
        return "--dry-run: listing what the check would run"
    if env["torch_cuda"] is None:
        return f"torch {env['torch']} is a CPU-only build (torch.version.cuda is None); install a CUDA build"
    if not env["cuda_available"]:
        return f"no CUDA device visible to torch {env['torch']} (CUDA {env['torch_cuda']} build)"
    return None


def new_report(env, names, budget_s, reason) -> dict:
    return {
        "format": FORMAT,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "finished": None,
        "seconds": None,
        "mode": "dry" if reason else "run",
        "reason": reason,
        "budget_s": budget_s,
        "environment": env,
        "items": [
            {
                "name": n,
                "what": ITEMS[n][0],
                "limit_s": ITEMS[n][1],
                "commands": [shlex.join(c) for c in commands(n)],
                "status": "skipped" if reason else "pending",
                "reason": reason,
                "seconds": None,
                "figures": {},
                "failures": [],
            }
            for n in names
        ],
        "summary": {},
    }


def write_report(report, path):
    counts = {s: sum(1 for i in report["items"] if i["status"] == s) for s in STATUSES}
    report["summary"] = {k: v for k, v in counts.items() if v}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str, allow_nan=True) + "\n")
    tmp.replace(path)


def markdown(report) -> str:
    """The report as a short markdown table (what is printed at the end)."""
    env = report["environment"]
    device = env.get("device") or {}
    head = (
        f"GPU check {report['started']} on {env.get('host')}: {report['mode']}"
        + (f" ({report['reason']})" if report["reason"] else "")
        + f"; torch {env.get('torch')}, {device.get('name', 'no CUDA device')}"
    )
    lines = [head, "", "| item | status | seconds | figures / reason |", "|---|---|---|---|"]
    for i in report["items"]:
        seconds = "" if i["seconds"] is None else f"{i['seconds']:.0f}"
        detail = i["reason"] if i["status"] != "passed" else json.dumps(i["figures"], default=str)
        lines.append(f"| {i['name']} | {i['status']} | {seconds} | {str(detail or '')[:300]} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"the JSON report (default {DEFAULT_OUT})")
    p.add_argument("--budget-s", type=float, default=540.0, help="the whole check's time limit (default 540)")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--only", default=None, metavar="NAME[,NAME]", help=f"a subset of: {', '.join(ITEMS)}")
    p.add_argument("--run-item", choices=sorted(IN_PROCESS), help=argparse.SUPPRESS)
    p.add_argument("--item-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = [n for n in (args.only or "").split(",") if n] or list(ITEMS)
    unknown = [n for n in names if n not in ITEMS]
    if unknown:
        p.error(f"--only: unknown item(s) {', '.join(unknown)}; valid: {', '.join(ITEMS)}")
    args.names = names
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_item:  # a child of the check: one in-process item, its figures as JSON
        Path(args.item_out).write_text(json.dumps(IN_PROCESS[args.run_item](), default=str, allow_nan=True))
        return 0
    t0 = time.perf_counter()
    env = environment()
    reason = dry_reason(env, args.dry_run)
    report = new_report(env, args.names, args.budget_s, reason)
    write_report(report, args.out)
    log(f"GPU check: {report['mode']}" + (f" ({reason})" if reason else "") + f"; report: {args.out}")
    runners = {"cuda_tests": _pytest_item, "cores_independence": _pytest_item, "smoke_cuda": _smoke_item}
    with tempfile.TemporaryDirectory(prefix="pwprune-gpu-check-") as tmp:
        for item in report["items"]:
            if reason:
                continue
            left = args.budget_s - (time.perf_counter() - t0) - RESERVE_S
            if left < 20:
                item.update(status="skipped", reason=f"the budget of {args.budget_s:.0f} s is spent")
                write_report(report, args.out)
                continue
            timeout = min(float(item["limit_s"]), left)
            log(f"  {item['name']}: {item['what']} (up to {timeout:.0f} s) ...")
            try:
                if item["name"] in runners:
                    got = runners[item["name"]](item["name"], tmp, timeout)
                else:
                    got = _child_item(item["name"], tmp, timeout)
            except Exception:
                got = {"status": "failed", "reason": "the check itself failed", "failures": [traceback.format_exc()]}
            item.update(got)
            log(f"  {item['name']}: {item['status']}" + (f" ({item['reason']})" if item["reason"] else ""))
            write_report(report, args.out)
    report["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_report(report, args.out)
    print(markdown(report), flush=True)
    return 1 if any(i["status"] in ("failed", "timeout") for i in report["items"]) else 0


if __name__ == "__main__":
    sys.exit(main())
