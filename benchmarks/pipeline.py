"""What the pipeline adds: the dry run of a completed run, the fixed cost of one job, and the
default run's end-to-end wall time, all with the real Snakemake CLI in temporary copies of the
repository (copy_repo / snakemake below; benchmarks never import the tests' helpers)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import log, result

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# what a run produces or a developer has locally; never part of a copy
_IGNORE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "results",
    "logs",
    ".snakemake",
    "__pycache__",
    ".pytest_cache",
    "*.egg-info",
    "out",
    ".dvc",
    "prepared",
    "raw",
)

DRY_RUN_GOAL, JOB_GOAL, RUN_GOAL = 3.0, 2.0, 600.0
TARGET = "results/figures/all"
# what a pipeline job imports on its way to a stage (the stages import these lazily); prune and
# fine-tune jobs no longer import pandas, and defer torch._dynamo (pwprune.train.defer_dynamo)
JOB_IMPORTS = (
    "pwprune.stages.inputs, pwprune.stages.jobs, torch, torch_pruning, pwprune.models, "
    "pwprune.train, pwprune.loss, pwprune.checkpoint, pwprune.metrics, pwprune.data, "
    "pwprune.data.dataset"
)


def copy_repo(dest: Path) -> Path:
    """The repository's source (no results, no data, no git) copied to dest."""
    shutil.copytree(REPO, dest, ignore=_IGNORE, dirs_exist_ok=True)
    for d in ("data", "results"):
        (dest / d).mkdir(exist_ok=True)
    return dest


def snakemake(cwd: Path, *args: str, timeout: int = 900):
    """Run the real snakemake CLI of this environment in cwd; raises when it fails."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


_run = {}  # the completed run of this process: root, exp, config args, seconds (or None)


def _tmpdir():
    d = Path(tempfile.mkdtemp(prefix="pwprune-bench-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


def completed_run(opts):
    """A completed run to measure: --run-dir as given; else the default run in a fresh copy
    (timed: default_run_s); with --quick the smoke configuration instead (about a minute)."""
    if _run:
        return _run
    if opts.run_dir:
        root = Path(opts.run_dir).resolve()
        if not (root / TARGET).exists():
            raise ValueError(f"--run-dir {root}: no {TARGET}; run `snakemake --cores 2 {TARGET}` there first")
        _run.update(root=root, exp="default", config=[], seconds=None)
        return _run
    root = copy_repo(_tmpdir() / "repo")
    exp, config = ("smoke", ["--configfile", "tests/smoke.yaml"]) if opts.quick else ("default", [])
    log(f"running the {exp} pipeline end to end in {root} (--cores 2) ...")
    t0 = time.perf_counter()
    snakemake(root, TARGET, "--cores", "2", *config, timeout=3600)
    seconds = time.perf_counter() - t0
    log(f"  {exp} run: {seconds:.0f} s")
    _run.update(root=root, exp=exp, config=config, seconds=seconds)
    return _run


def _pending_jobs(stdout):
    if "Nothing to be done" in stdout:
        return 0
    m = re.search(r"^total\s+(\d+)", stdout, re.MULTILINE)
    return int(m.group(1)) if m else -1


def time_dry_run(root, config=(), repeats=3):
    """Median wall seconds of `snakemake -n results/figures/all` and the jobs it would run."""
    times, pending = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = snakemake(root, "-n", TARGET, *config)  # targets before --configfile (it takes several)
        times.append(time.perf_counter() - t0)
        pending = _pending_jobs(proc.stdout + proc.stderr)
    return statistics.median(times), pending


def time_imports(repeats=3):
    """Median wall seconds of a fresh interpreter importing what a job imports (one warm-up run
    first, so the figure is the warm page cache a pipeline's later jobs see)."""
    cmd = [sys.executable, "-c", f"import {JOB_IMPORTS}"]
    subprocess.run(cmd, cwd=REPO, check=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_exits(repeats=3):
    """Median wall seconds of a fresh interpreter that imports torch and ends normally (tearing
    its modules down) vs with os._exit(0), as a finished job does (pwprune.stages.jobs.job_log)."""
    cmds = {"normal exit": "import torch", "os._exit(0)": "import torch, os; os._exit(0)"}
    subprocess.run([sys.executable, "-c", cmds["normal exit"]], cwd=REPO, check=True)  # warm cache
    times = {k: [] for k in cmds}
    for _ in range(repeats):
        for k, code in cmds.items():  # side by side, alternating
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# a training job's first optimizer steps: torch.optim imports torch._dynamo on its first call
# unless pwprune.stages.inputs.setup has deferred it (pwprune.train.defer_dynamo)
FIRST_STEPS = """
import sys, torch
from pwprune.train import defer_dynamo
if sys.argv[1] == "deferred":
    defer_dynamo()
m = torch.nn.Linear(4, 2)
opt = torch.optim.AdamW(m.parameters(), lr=0.1)
for _ in range(3):
    opt.zero_grad(); m(torch.randn(8, 4)).sum().backward(); opt.step()
"""


def time_first_steps(repeats=3):
    """Median wall seconds of a fresh interpreter that imports torch and takes its first AdamW
    steps, with torch._dynamo deferred and without, interleaved so both see the same machine."""
    times = {"deferred": [], "imported": []}
    for mode in times:  # warm-up
        subprocess.run([sys.executable, "-c", FIRST_STEPS, mode], cwd=REPO, check=True)
    for _ in range(repeats):
        for mode in times:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", FIRST_STEPS, mode], cwd=REPO, check=True)
            times[mode].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _read_tsv(path):
    lines = Path(path).read_text().splitlines()
    return dict(zip(lines[0].split("\t"), lines[1].split("\t")))


def _experiment(root, exp, config):
    import yaml

    cfg = yaml.safe_load((root / "params.yaml").read_text())["experiments"]
    if config:
        cfg.update(yaml.safe_load((root / config[-1]).read_text())["experiments"])
    return cfg[exp]


# what a job's interpreter imports before its stage runs: a job that computes on a model
# (data preparation, training, pruning, fine-tuning, evaluation, latency, the teacher diagnostic)
# and a report job (aggregation, bootstrap, figures, summary)
STARTUP_IMPORTS = {
    "model": "torch, torch_pruning, snakemake.script",
    "report": "numpy, pandas, matplotlib.pyplot, snakemake.script",
}
# rules run inside the Snakemake process (`run:`): no interpreter of their own
IN_PROCESS = ("all_figures", "all_ablation", "all_variants")


def time_startups(repeats=3):
    """Median wall seconds of a fresh interpreter importing each kind of job's libraries."""
    out = {}
    for kind, modules in STARTUP_IMPORTS.items():
        cmd = [sys.executable, "-c", f"import {modules}"]
        subprocess.run(cmd, cwd=REPO, check=True)  # warm the page cache, as a run's later jobs see it
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True)
            times.append(time.perf_counter() - t0)
        out[kind] = statistics.median(times)
    return out


def job_seconds(root):
    """A completed run's jobs from Snakemake's benchmark files (benchmarks/out/**.tsv): per kind
    ("model", "report") the job count and the summed wall seconds. A job of an experiment's seed
    folder or its data preparation computes on a model; the rest are report jobs; `run:` rules
    are left out (they run inside Snakemake)."""
    found = {k: {"jobs": 0, "seconds": 0.0} for k in STARTUP_IMPORTS}
    for tsv in sorted((Path(root) / "benchmarks" / "out").rglob("*.tsv")):
        if tsv.stem in IN_PROCESS:
            continue
        rel = tsv.relative_to(Path(root) / "benchmarks" / "out").parts
        kind = "model" if (len(rel) > 2 and rel[1].startswith("seed")) or tsv.stem == "prepare_data" else "report"
        found[kind]["jobs"] += 1
        found[kind]["seconds"] += float(_read_tsv(tsv)["s"])
    return found


def startup_split(root, startups):
    """A run's job-seconds split into start-up (jobs x the measured start-up of their kind) and
    work (the rest)."""
    found = job_seconds(root)
    jobs = sum(v["jobs"] for v in found.values())
    total = sum(v["seconds"] for v in found.values())
    startup = sum(found[k]["jobs"] * startups[k] for k in found)
    return {"jobs": jobs, "job_seconds": total, "startup_seconds": startup, "work_seconds": total - startup}


def job_overhead_from_run(run, repeats=2):
    """Per random-pruning job of seed 0: Snakemake's benchmark wall time minus the time of the same
    stage function on the same inputs in this (warm) interpreter, 1 thread like the job.
    -> (median seconds, number of jobs)."""
    import torch

    from pwprune.stages.prune import prune_stage

    root, exp = run["root"], run["exp"]
    cfg = _experiment(root, exp, run["config"])
    tsvs = sorted((root / "benchmarks/out" / exp / "seed0/prune/random-none").glob("*.tsv"))
    if not tsvs:
        return float("nan"), 0
    seed_dir = root / "results" / exp / "seed0"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    diffs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for tsv in tsvs:
                target = tsv.stem
                prune = {
                    "method": "random",
                    "target": float(target),
                    "tolerance": cfg["prune"].get("tolerance", 0.02),
                    "options": {},
                    "loss": "none",
                }
                out = {k: f"{tmp}/{target}-{k}" for k in ("model", "metrics", "info")}
                stage = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    prune_stage(
                        root / "data/prepared" / exp,
                        seed_dir / "dense/model.pt",
                        seed_dir / "dense/teacher.pt",
                        prune,
                        0,
                        torch.device("cpu"),
                        "benchmark",
                        out,
                        log=lambda *a: None,
                    )
                    stage.append(time.perf_counter() - t0)
                diffs.append(float(_read_tsv(tsv)["s"]) - min(stage))
    finally:
        torch.set_num_threads(old)
    return statistics.median(diffs), len(diffs)


def run(names, opts):
    out = []
    if "job_overhead_s" in names:
        t = time_imports(opts.repeats or 3)
        out.append(
            result(
                "job_overhead_s",
                t,
                "s",
                f"<= {JOB_GOAL}",
                t <= JOB_GOAL,
                case="interpreter start + job imports",
                modules=JOB_IMPORTS,
            )
        )
        log(f"job_overhead_s (imports): {t:.2f} s")
        first = time_first_steps(opts.repeats or 3)
        for mode, t in first.items():
            out.append(
                result(
                    "job_overhead_s",
                    t,
                    "s",
                    None,
                    None,
                    case=f"interpreter + torch + first AdamW steps, torch._dynamo {mode}",
                )
            )
        log(
            f"job_overhead_s (first AdamW steps): deferred {first['deferred']:.2f} s, "
            f"imported {first['imported']:.2f} s"
        )
        exits = time_exits(opts.repeats or 3)
        for mode, t in exits.items():
            out.append(result("job_overhead_s", t, "s", None, None, case=f"interpreter + import torch, {mode}"))
        log(f"job_overhead_s (exit): normal {exits['normal exit']:.2f} s, os._exit {exits['os._exit(0)']:.2f} s")
    needs_run = "dry_run_s" in names or "default_run_s" in names or "job_overhead_s" in names
    needs_run = needs_run or "startup_share" in names
    if not needs_run:
        return out
    r = completed_run(opts)
    if "startup_share" in names:
        startups = time_startups(opts.repeats or 3)
        log("startup_share: start-up " + ", ".join(f"{k} job {v:.2f} s" for k, v in startups.items()))
        runs = {"run": r["root"]}
        if getattr(opts, "before_run_dir", None):
            runs = {"before": Path(opts.before_run_dir).resolve(), "after": r["root"]}
        for label, root in runs.items():
            s = startup_split(root, startups)
            share = s["startup_seconds"] / s["job_seconds"] if s["job_seconds"] else float("nan")
            out.append(
                result(
                    "startup_share",
                    share,
                    "fraction",
                    None,
                    None,
                    case=f"{label}: {root}",
                    **{k: round(v, 1) for k, v in s.items()},
                    startup_model_s=round(startups["model"], 2),
                    startup_report_s=round(startups["report"], 2),
                )
            )
            log(
                f"startup_share ({label}): {s['jobs']} jobs, {s['job_seconds']:.0f} job-s = "
                f"{s['startup_seconds']:.0f} start-up + {s['work_seconds']:.0f} work; start-up share {share:.2f}"
            )
    if "default_run_s" in names:
        if r["seconds"] is not None and r["exp"] == "default":
            out.append(
                result(
                    "default_run_s",
                    r["seconds"],
                    "s",
                    f"< {RUN_GOAL:.0f}",
                    r["seconds"] < RUN_GOAL,
                    case="snakemake --cores 2 results/figures/all, default experiment, fresh copy",
                )
            )
        else:
            log("default_run_s: skipped (--quick or --run-dir)")
    if "dry_run_s" in names:
        t, pending = time_dry_run(r["root"], r["config"], opts.repeats or 3)
        out.append(
            result(
                "dry_run_s",
                t,
                "s",
                f"<= {DRY_RUN_GOAL:.0f}",
                t <= DRY_RUN_GOAL,
                case=f"completed {r['exp']} run",
                pending_jobs=pending,
            )
        )
        log(f"dry_run_s (completed {r['exp']} run): {t:.2f} s, {pending} jobs pending")
        if r["exp"] != "default":  # --quick: also plan the whole default grid from scratch
            fresh = copy_repo(_tmpdir() / "repo")
            t, pending = time_dry_run(fresh, (), opts.repeats or 3)
            out.append(
                result(
                    "dry_run_s",
                    t,
                    "s",
                    f"<= {DRY_RUN_GOAL:.0f}",
                    t <= DRY_RUN_GOAL,
                    case="default grid, nothing built",
                    pending_jobs=pending,
                )
            )
            log(f"dry_run_s (default grid, nothing built): {t:.2f} s, {pending} jobs pending")
    if "job_overhead_s" in names:
        t, n = job_overhead_from_run(r)
        out.append(
            result(
                "job_overhead_s",
                t,
                "s",
                f"<= {JOB_GOAL}",
                t <= JOB_GOAL,
                case=f"snakemake job wall - stage time ({r['exp']} random-pruning jobs)",
                jobs=n,
            )
        )
        log(f"job_overhead_s (snakemake job - stage): {t:.2f} s over {n} jobs")
    return out
