"""The front door and the documentation site (mkdocs.yml, docs/): a README short enough to read,
whose set-up and test commands are the ones CI runs; every page in the site's nav; every page the
old README linked to still there; the configuration reference generated from the schema with every
key, and a key without a description refused; and (slow) the real `mkdocs build --strict` with a
schema that has one key more, whose built page shows it."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "docs" / "hooks" / "generated.py"
SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"


def _hook():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[test,docs]'")
    spec = importlib.util.spec_from_file_location("docs_hook_generated", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml names a Python callable (the toc slugify); read it as plain data here
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


# ---------------------------------------------------------------- README


def test_readme_is_a_short_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the details belong in docs/"
    first_screen = "\n".join(lines[:45])
    for command in (
        "python3.11 -m venv .venv",
        '.venv/bin/pip install -e ".[test]"',
        "snakemake --cores 8 results/figures/all",
        ".venv/bin/python -m pytest",
    ):
        assert command in first_screen, f"README's first screen lacks {command!r}"


def test_ci_runs_the_readmes_commands():
    """.ci/run sets up with the README's two commands and runs its full test command."""
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3.11 -m venv .venv" in readme and "python3.11 -m venv .venv" in ci
    assert '.venv/bin/pip install -e ".[test]"' in readme and '-e ".[test]"' in ci
    test_command = re.search(r"^(\.venv/bin/python -m pytest --full)\b", readme, re.M)
    assert test_command, "README: the full test command"
    assert re.search(r"^\.venv/bin/python -m pytest .*--full", ci, re.M), ".ci/run must run the README's test command"
    assert re.search(r"^stage docs$", ci, re.M) and "mkdocs build --strict" in ci


def test_readme_default_reading_is_marked():
    """Another engineer rewrites the default's reading from each new run: it sits between markers."""
    readme = (REPO / "README.md").read_text()
    assert readme.count("<!-- default-reading -->") == 1 and readme.count("<!-- /default-reading -->") == 1
    reading = readme.split("<!-- default-reading -->")[1].split("<!-- /default-reading -->")[0].strip()
    assert reading and "\n\n" not in reading, "one paragraph"
    assert "docs/default_group_performance.png" in readme.split("<!-- default-reading -->")[0]


def test_readme_links_resolve_and_old_pages_exist():
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).is_file(), f"README links to {target}, which does not exist"
    # every page and figure the README linked to before the site existed (issue 32)
    for old in (
        "fair-baselines.md",
        "datasets.md",
        "convergence.md",
        "your-data.md",
        "paper-settings.md",
        "interfaces.md",
        "default_group_performance.png",
        "default_variant_comparison.png",
        "baselines_comparison.png",
    ):
        assert (REPO / "docs" / old).is_file(), f"docs/{old} was linked from the README and must stay"


# ---------------------------------------------------------------- the site's pages


def test_every_page_is_in_the_nav():
    config = _mkdocs_config()
    nav = _nav_pages(config["nav"])
    generated = {"configuration-reference.md"}
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md") if "hooks" not in p.parts}
    assert pages - set(nav) == set(), "pages missing from mkdocs.yml's nav"
    assert set(nav) - pages - generated == set(), "nav entries without a page"
    assert config["theme"].get("font") is False, "no remote fonts: the build and the site stay offline"


def test_documented_commands_are_the_tested_ones():
    """Commands moved from the README to the pages are the ones the tests run."""
    dvc = (REPO / "docs" / "dvc.md").read_text()
    assert "snakemake --touch --forceall --cores 1 results/figures/all" in dvc  # tests/test_dvc.py POST_PULL
    started = (REPO / "docs" / "getting-started.md").read_text()
    assert "snakemake --unlock" in started and "--rerun-incomplete" in started  # tests/test_reliability.py
    assert "snakemake results/figures/all --cores 2 --configfile tests/smoke.yaml" in started
    assert (REPO / "tests" / "smoke.yaml").is_file()
    api = (REPO / "docs" / "api.md").read_text()
    assert "::: pwprune.api.compress" in api and "::: pwprune.loss.PerformanceWeightedLoss" in api


# ---------------------------------------------------------------- the configuration reference


def _schema_keys(node, path=""):
    """Every property name in the raw schema (x-properties: one placeholder key), with its path."""
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            yield f"{path}.{key}", key
            yield from _schema_keys(value, f"{path}.{key}")
        for key, value in node.items():
            if key not in ("properties",) and isinstance(value, dict | list):
                yield from _schema_keys(value, path)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_keys(value, path)


def test_reference_lists_every_schema_key():
    hook = _hook()
    page = hook.reference_markdown(hook.load_schema(SCHEMA))
    rows = set(re.findall(r"^\| `([^`]+)` \|", page, re.M))
    keys = {key for _, key in _schema_keys(yaml.safe_load(SCHEMA.read_text()))}
    assert keys and keys <= rows, f"keys missing from the reference: {sorted(keys - rows)}"
    assert "<method>" in rows and "<name>" in rows  # pw.methods.<method>, experiments.<name>


def _with_key(tmp_path, description: str | None) -> Path:
    schema = yaml.safe_load(SCHEMA.read_text())
    spec = {"type": "integer", "minimum": 3, "default": 7}
    if description is not None:
        spec["description"] = description
    schema["$defs"]["experiment"]["properties"]["evaluate"]["properties"]["docs_probe_key"] = spec
    out = tmp_path / "params.schema.yaml"
    out.write_text(yaml.safe_dump(schema, sort_keys=False))
    return out


def test_reference_shows_an_added_key(tmp_path):
    hook = _hook()
    page = hook.reference_markdown(hook.load_schema(_with_key(tmp_path, "a key only this test adds")))
    section = page.split("{#experiments-name-evaluate}")[1].split("\n## ")[0]
    assert "| `docs_probe_key` | integer | `7` | ≥ 3 | a key only this test adds |" in section


def test_a_key_without_description_fails_the_build(tmp_path):
    hook = _hook()
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match=r"experiments\.<name>\.evaluate\.docs_probe_key"):
        hook.reference_markdown(hook.load_schema(_with_key(tmp_path, None)))


@pytest.mark.slow
def test_strict_build_shows_an_added_key(tmp_path):
    """The real `mkdocs build --strict` (mkdocstrings, the rule graph through snakemake and dot),
    with a copy of the schema that has one key more: the built reference page shows it."""
    missing = [n for n in ("mkdocs", "mkdocstrings", "material") if importlib.util.find_spec(n) is None]
    if shutil.which("dot") is None:
        missing.append("graphviz's dot")
    if missing:
        reason = f"the docs tools are not installed: {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    schema = _with_key(tmp_path, "a key only this test adds")
    site = tmp_path / "site"
    env = {**os.environ, "PWPRUNE_DOCS_SCHEMA": str(schema), "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    page = (site / "configuration-reference" / "index.html").read_text()
    assert "docs_probe_key" in page and "a key only this test adds" in page
    assert "<svg" in (site / "pipeline.svg").read_text()
    assert 'id="pwprune.api.compress"' in (site / "api" / "index.html").read_text()
