"""The benchmark CLI's output format (the figures themselves are printed, never asserted)."""

import json
import subprocess
import sys

import pytest

from benchmarks import BENCHMARKS, result
from benchmarks.__main__ import table
from helpers import REPO


@pytest.mark.slow
def test_json_lines_of_a_cheap_benchmark():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--json", "--quick", "--only", "pw_overhead_cached", "--repeats", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["name"] for r in lines] == ["pw_overhead_cached"]
    for r in lines:
        assert {"name", "value", "unit", "goal", "met"} <= set(r)
        assert isinstance(r["value"], float)
        assert r["name"] in BENCHMARKS
        assert {"model", "batch", "ce_epoch_s", "pw_epoch_s"} <= set(r)
    assert "pw_overhead_cached" in proc.stderr  # the table goes to stderr with --json


def test_result_and_table():
    r = result(
        "latency_speedup",
        2,
        "x dense",
        ">= 0.7 x macs_ratio",
        True,
        model="m",
        batch=1,
        method="random",
        target_reduction=0.75,
        macs_ratio=4.0,
    )
    assert r["value"] == 2.0 and r["met"] is True
    assert "latency_speedup" in table([r]) and "macs_ratio=4" in table([r])
    assert result("dry_run_s", float("nan"), "s", "<= 3", False)["met"] is None


@pytest.mark.slow
def test_unknown_name_is_refused():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "dry_run_s" in proc.stderr


def test_small_cnn_layouts_reports_both_layouts_of_the_default_model():
    """The CPU case of train_samples_s (docs/performance.md quotes it): the default's model trained
    through pwprune.train.fit in both layouts, each a result with its ratio to the default layout
    (the figures are printed, never asserted), and the caller's thread count restored."""
    from types import SimpleNamespace

    import torch

    from benchmarks.throughput import small_cnn_layouts

    threads = torch.get_num_threads()
    rows = small_cnn_layouts(SimpleNamespace(quick=True), torch.device("cpu"))
    assert torch.get_num_threads() == threads
    assert [(r["name"], r["channels_last"]) for r in rows] == [("train_samples_s", False), ("train_samples_s", True)]
    for r in rows:
        assert r["unit"] == "samples/s" and r["value"] > 0 and r["case"].startswith("small_cnn 12 px, batch 128")
    assert rows[0]["vs_default_layout"] == 1.0 and rows[1]["vs_default_layout"] > 0
