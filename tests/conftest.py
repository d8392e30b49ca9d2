"""Shared fixtures (the helpers they use are in tests/helpers.py), and the default test selection.

`pytest` runs the fast unit selection: tests marked `e2e` (the real Snakemake CLI, DVC, Slurm)
or `slow` (more than about a second, or a subprocess) are deselected, not skipped.
`pytest --full` runs everything; CI (.ci/run) does.
"""

from __future__ import annotations

import pytest

from helpers import completed_run, copy_repo

# Marks that keep a test out of the default selection (pytest --full runs them too).
FULL_ONLY = ("e2e", "slow")
_deselected_key = pytest.StashKey[int]()  # how many the default selection left out


def pytest_addoption(parser):
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="run the whole suite, including the tests marked e2e or slow (deselected by default; CI runs with --full)",
    )


def _named_tests(config) -> tuple[str, ...]:
    """The node ids named on the command line (path::name), relative to the rootdir."""
    named = []
    for arg in config.args:
        if "::" not in arg:
            continue
        path, rest = arg.split("::", 1)
        full = (config.invocation_params.dir / path).resolve()
        try:
            path = full.relative_to(config.rootpath).as_posix()
        except ValueError:
            pass
        named.append(f"{path}::{rest}")
    return tuple(named)


def pytest_collection_modifyitems(config, items):
    """Deselect the e2e and slow tests unless --full, -m EXPR (which then alone selects), or the
    test is named by its node id (tests/faults.py runs the tests it names, e2e ones included)."""
    if config.getoption("--full") or config.option.markexpr:
        return
    named = _named_tests(config)

    def wanted(item) -> bool:
        if not any(item.get_closest_marker(m) for m in FULL_ONLY):
            return True
        return any(item.nodeid == n or item.nodeid.startswith((n + "[", n + "::")) for n in named)

    keep, dropped = [], []
    for item in items:
        (keep if wanted(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    config.stash[_deselected_key] = len(dropped)


def pytest_report_header(config):
    if config.option.markexpr:
        return f"selection: -m {config.option.markexpr!r} (instead of the default fast selection)"
    if not config.getoption("--full"):
        return (
            "selection: fast unit tests only; tests marked "
            f"{' or '.join(FULL_ONLY)} are deselected (run everything with: pytest --full)"
        )
    return "selection: --full (every test, including e2e and slow)"


def pytest_terminal_summary(terminalreporter, config):
    n = config.stash.get(_deselected_key, 0)
    if n:
        terminalreporter.write_line(
            f"{n} test{'s' if n != 1 else ''} marked {' or '.join(FULL_ONLY)} deselected; "
            "run the whole suite with: .venv/bin/python -m pytest --full",
            yellow=True,
        )


@pytest.fixture
def repo_copy(tmp_path):
    return copy_repo(tmp_path / "repo")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One completed smoke run shared by the tests that only read its results."""
    return completed_run(tmp_path_factory, "smoke", "results/figures/all", "--configfile", "tests/smoke.yaml")


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """CIFAR-10 fixture files in the real format under tmp_path/raw, trusted by torchvision."""
    from data_fixtures import trust_fixture_md5s, write_cifar10

    root = tmp_path / "raw"
    write_cifar10(root)
    trust_fixture_md5s(monkeypatch, root)
    return root


@pytest.fixture
def drawn(monkeypatch):
    """Every figure plots.py saves, by file stem, still open for inspection."""
    from pathlib import Path

    from pwprune import plots

    figs = {}
    real = plots._save

    def save(fig, out_stem):
        figs[Path(out_stem).name] = fig
        return real(fig, out_stem)

    monkeypatch.setattr(plots, "_save", save)
    return figs
