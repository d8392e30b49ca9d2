"""The GPU check (python -m benchmarks.gpu_check): without CUDA it runs dry, lists what it would run,
marks every item skipped with the reason and still writes its report; the report's format, the
JUnit and dry-run parsing its items rely on. (On a GPU it runs; that is not tested here.)"""

from __future__ import annotations

import json

import pytest
import torch

import benchmarks.gpu_check as gpu_check

ITEM_KEYS = {"name", "what", "limit_s", "commands", "status", "reason", "seconds", "figures", "failures"}


def test_without_cuda_it_runs_dry_and_still_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report.json"
    assert gpu_check.main(["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["format"] == gpu_check.FORMAT and report["mode"] == "dry"
    assert report["reason"].startswith("no CUDA device visible to torch") or "CPU-only build" in report["reason"]
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["cuda_available"] is False and env["device"] is None
    assert isinstance(env["cuda_present_probe"], bool)
    assert [i["name"] for i in report["items"]] == list(gpu_check.ITEMS)
    for item in report["items"]:
        assert set(item) == ITEM_KEYS
        assert item["status"] == "skipped" and item["reason"] == report["reason"]
        assert item["commands"] and all(isinstance(c, str) for c in item["commands"])
        assert item["figures"] == {} and item["failures"] == [] and item["seconds"] is None
    assert report["summary"] == {"skipped": len(gpu_check.ITEMS)}
    assert report["finished"] and report["seconds"] is not None
    table = capsys.readouterr().out
    assert "| item | status | seconds | figures / reason |" in table
    assert all(f"| {name} | skipped |" in table for name in gpu_check.ITEMS)


def test_what_each_item_would_run(tmp_path):
    out = tmp_path / "r.json"
    assert gpu_check.main(["--dry-run", "--only", "cuda_tests,smoke_cuda", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["reason"].startswith("--dry-run")
    items = {i["name"]: i for i in report["items"]}
    assert list(items) == ["cuda_tests", "smoke_cuda"]
    assert "-m 'cuda and not e2e' tests/" in items["cuda_tests"]["commands"][0]
    smoke = items["smoke_cuda"]["commands"]
    assert [c.split()[:2] for c in smoke] == [
        ["snakemake", "-n"],
        ["snakemake", "-n"],
        ["snakemake", "results/figures/all"],
    ]
    assert "--config device=cuda --profile profiles/local" in smoke[2] and "tests/smoke.yaml" in smoke[2]
    assert "device=auto" in smoke[1]
    assert gpu_check.CORES_TEST in gpu_check.commands("cores_independence")[0]


def test_unknown_items_are_refused_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "smoke,cuda_tests"])
    assert "unknown item(s) smoke; valid: cuda_tests, smoke_cuda" in capsys.readouterr().err


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.test_b" name="test_skip"><skipped message="no CUDA device on this machine"/></testcase>
<testcase classname="tests.test_b" name="test_error"><error message="fixture failed">trace</error></testcase>
</testsuite></testsuites>
"""


def test_junit_results_count_and_name_every_failure(tmp_path):
    path = tmp_path / "j.xml"
    path.write_text(JUNIT)
    counts, lines = gpu_check.junit_results(path)
    assert counts == {"tests": 4, "passed": 1, "failed": 2, "skipped": 1}
    assert lines == [
        "failed: tests.test_a::test_bad: assert 1 == 2",
        "skipped: tests.test_b::test_skip: no CUDA device on this machine",
        "failed: tests.test_b::test_error: fixture failed",
    ]


def test_gpu_jobs_are_counted_from_a_dry_run():
    text = (
        "rule prune:\n    resources: tmpdir=/tmp, runtime=30, gpu=1, mem_mb=2000\n"
        "rule figure:\n    resources: tmpdir=/tmp, runtime=10, mem_mb=2000\n"
        "rule finetune:\n    resources: tmpdir=/tmp, resume_minutes=10, gpu=1\n"
    )
    assert gpu_check._gpu_jobs(text) == 2


def test_the_markdown_table_shows_figures_of_passed_items_and_reasons_of_the_rest():
    report = gpu_check.new_report(
        {"host": "h", "torch": "2.14.1", "device": {"name": "H100"}}, ["cuda_tests"], 60, None
    )
    report["items"][0].update(status="passed", seconds=12.3, figures={"tests": 8, "passed": 8})
    text = gpu_check.markdown(report)
    assert "run; torch 2.14.1, H100" in text and '| cuda_tests | passed | 12 | {"tests": 8, "passed": 8} |' in text
    report["items"][0].update(status="failed", reason="1 failed, 0 skipped of 8")
    assert "| cuda_tests | failed | 12 | 1 failed, 0 skipped of 8 |" in gpu_check.markdown(report)
