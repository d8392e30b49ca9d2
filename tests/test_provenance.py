"""pwprune.provenance on a small package written here: which files a script can run, and a hash
that changes exactly when one of them does."""

from __future__ import annotations

from pathlib import Path

import pytest

from pwprune import provenance


def _write(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


PACKAGE = {
    "pwprune/__init__.py": "",
    "pwprune/a.py": "from pwprune import b\n",
    "pwprune/b.py": "def f():\n    from .c import g  # imported inside a function: still run\n    return g\n",
    "pwprune/c.py": "g = 1\n",
    "pwprune/unused.py": "x = 1\n",
    "pwprune/kinds/__init__.py": (
        "import importlib\n\ndef load(k):\n    return importlib.import_module(f'pwprune.kinds.{k}')\n"
    ),
    "pwprune/kinds/one.py": "",
    "pwprune/kinds/two.py": "",
    "pwprune/stages/__init__.py": "",
    "pwprune/stages/labels.py": "def label(w):\n    return f'job {w}'\n",
    "scripts/job.py": "from pwprune.a import b\nfrom pwprune.stages import labels\n",
    "scripts/kinds.py": "from pwprune.kinds import load\n",
}


def test_closure_follows_function_level_relative_and_dynamic_imports(tmp_path):
    _write(tmp_path, PACKAGE)
    names = provenance.module_names(provenance.code_files(tmp_path / "scripts/job.py", root=tmp_path), root=tmp_path)
    assert names == ["pwprune", "pwprune.a", "pwprune.b", "pwprune.c", "pwprune.stages", "pwprune.stages.labels"]
    kinds = provenance.module_names(provenance.code_files(tmp_path / "scripts/kinds.py", root=tmp_path), root=tmp_path)
    assert kinds == ["pwprune", "pwprune.kinds", "pwprune.kinds.one", "pwprune.kinds.two"]


def test_hash_changes_with_run_code_only(tmp_path):
    _write(tmp_path, PACKAGE)
    script = tmp_path / "scripts/job.py"
    before = provenance.code_hash(script, root=tmp_path)
    assert provenance.code_hash(script, root=tmp_path) == before  # deterministic
    for rel, touched in (("pwprune/unused.py", False), ("pwprune/stages/labels.py", False), ("pwprune/c.py", True)):
        with open(tmp_path / rel, "a") as f:
            f.write("EDITED = 1\n")
        after = provenance.code_hash(script, root=tmp_path)
        assert (after != before) == touched, rel
        before = after


def test_hash_ignores_what_changes_no_value(tmp_path):
    """A comment, a docstring or a reformatting changes no value and reruns nothing; a changed
    constant, even inside an f-string or a default argument, does."""
    _write(tmp_path, PACKAGE)
    script = tmp_path / "scripts/job.py"
    c = tmp_path / "pwprune/c.py"
    c.write_text('"""Module c."""\n\n\ndef f(x, k=2):\n    """Twice x."""\n    return x * k\n')
    before = provenance.code_hash(script, root=tmp_path)
    for text, same in (
        (
            '"""Module c, reworded."""\n# a comment\ndef f(x, k=2):  # why\n    """Twice."""\n    return (x *\n k)\n',
            True,
        ),
        ('"""Module c."""\n\n\ndef f(x, k=3):\n    """Twice x."""\n    return x * k\n', False),
        ('"""Module c."""\n\n\ndef f(x, k=2):\n    return f"{x * k}"\n', False),
    ):
        c.write_text(text)
        assert (provenance.code_hash(script, root=tmp_path) == before) == same, text


def test_the_real_rules_hash_what_they_run():
    """The figure job's hash covers the plots and not the training code; the pruning job's the
    reverse; every script's closure is inside the package."""
    scripts = provenance.ROOT / "workflow" / "scripts"
    plot = set(provenance.module_names(provenance.code_files(scripts / "plot.py")))
    prune = set(provenance.module_names(provenance.code_files(scripts / "prune.py")))
    assert {"pwprune.plots", "pwprune.summary", "pwprune.stages.figures"} <= plot
    assert not plot & {"pwprune.train", "pwprune.models", "pwprune.pruning", "pwprune.metrics"}
    assert {"pwprune.pruning.scorers", "pwprune.stages.prune", "pwprune.train"} <= prune
    assert not prune & {"pwprune.plots", "pwprune.summary", "pwprune.metrics"}


def test_log_only_imports_are_run_but_hashed_only_where_another_path_reaches_them(tmp_path):
    """A module that a file lists in LOG_ONLY_IMPORTS is still in what the script can run, but an
    edit of it changes the hash only of the scripts that also reach it through another file."""
    _write(tmp_path, PACKAGE)
    _write(
        tmp_path,
        {
            "pwprune/verdict.py": "LIMIT = 1\n",
            "pwprune/stage.py": (
                'LOG_ONLY_IMPORTS = ("pwprune.verdict",)\n\n\ndef run(log):\n'
                "    from pwprune.verdict import LIMIT\n    log(LIMIT)\n"
            ),
            "pwprune/table.py": "from pwprune.verdict import LIMIT\n",
            "scripts/stage.py": "from pwprune import stage\n",
            "scripts/both.py": "from pwprune import stage, table\n",
        },
    )
    stage, both = tmp_path / "scripts/stage.py", tmp_path / "scripts/both.py"
    assert "pwprune.verdict" in provenance.module_names(provenance.code_files(stage, root=tmp_path), root=tmp_path)
    hashed = provenance.module_names(provenance.code_files(stage, root=tmp_path, follow_log_only=False), root=tmp_path)
    assert "pwprune.verdict" not in hashed
    before = {s: provenance.code_hash(s, root=tmp_path) for s in (stage, both)}
    (tmp_path / "pwprune/verdict.py").write_text("LIMIT = 2\n")
    after = {s: provenance.code_hash(s, root=tmp_path) for s in (stage, both)}
    assert after[stage] == before[stage]
    assert after[both] != before[both]
    # a declaration that is not a tuple of names is refused, naming the file
    (tmp_path / "pwprune/stage.py").write_text("LOG_ONLY_IMPORTS = (1,)\n")
    provenance.log_only_imports.cache_clear()
    with pytest.raises(ValueError, match="stage.py: LOG_ONLY_IMPORTS"):
        provenance.code_hash(stage, root=tmp_path)
