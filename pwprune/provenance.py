"""Which code a pipeline stage runs, found by reading its imports, and a hash of exactly that code.

Snakemake reruns a job when a param changes, so each rule carries the hash of the pwprune
modules its script can execute: the script's `pwprune` imports, followed transitively through
every module they import (imports inside functions included, since stages import lazily), plus
each package's `__init__.py` (Python runs it on import). Editing `pwprune/plots.py` then reruns
the figure jobs and nothing else; editing a stage module reruns that stage and what reads its
outputs.

What is hashed is each module's syntax tree without its docstrings (code_text), not its bytes: an
edit that changes no value (a comment, a docstring, reformatting) reruns nothing, as a null edit
of params.yaml does not.

A dynamic import with a constant prefix (`importlib.import_module(f"pwprune.data.{kind}")`)
counts every module under that prefix. Each job logs the pwprune modules it actually loaded
(pwprune.stages.jobs.job_log), and a test holds that list inside the static one, so an import
this reader cannot see is caught rather than silently left out of the hash.

Two kinds of module are run but not hashed, because nothing they compute reaches a result:
- LOG_TEXT_ONLY modules (log labels), for every rule;
- a module that one file names in its own `LOG_ONLY_IMPORTS = ("pwprune.x", ...)`, for the rules
  that reach it only through that file. The fine-tuning stage declares pwprune.convergence so: the
  job's convergence verdicts only become warning lines in its log, while the aggregation and the
  summary, whose tables the same criterion computes, import it plainly and hash it. A test holds
  each declaring file to that (tests/test_workflow.py, test_log_only_imports_reach_only_the_log).

Torch-free: the Snakefile calls this at start-up.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "pwprune"
ROOT = Path(__file__).resolve().parent.parent  # the directory that holds the package
# Modules whose text reaches only a job's log, never a result: run, but not hashed, so that
# rewording a log label reruns nothing. They import nothing from pwprune (a test checks).
LOG_TEXT_ONLY = frozenset({"pwprune.stages.labels"})


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of a pwprune module or package under `root` (the directory that holds the
    package), or None when `name` is not one (an attribute imported with `from pkg import name`)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = Path(root).joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _package_of(path: Path, root: Path) -> str:
    """The package a module file belongs to (for relative imports): a/b/c.py and a/b/__init__.py
    are both in a.b."""
    return ".".join(path.relative_to(root).parts[:-1])


def _under(prefix: str, root: Path) -> list[str]:
    """Every module whose dotted name starts with `prefix` (a package path ending in '.')."""
    pkg = prefix.rstrip(".")
    f = module_file(pkg, root)
    if f is None or f.name != "__init__.py":
        return []
    out = []
    for p in sorted(f.parent.rglob("*.py")):
        rel = p.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


@lru_cache(maxsize=None)
def _imports(path: Path, root: Path) -> tuple[str, ...]:
    """Dotted names of the pwprune modules a file may import (not yet checked to exist)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _package_of(path, root) if path.is_relative_to(root / PACKAGE) else ""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names]  # kept only where a module
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
        ):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append(arg.value)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                names += _under(str(arg.values[0].value), root)
    return tuple(n for n in names if n == PACKAGE or n.startswith(PACKAGE + "."))


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def code_text(path: Path) -> bytes:
    """What of a module's source its code hash covers: the syntax tree without docstrings, so
    comments, docstrings and layout are left out and every statement and value is in."""
    return _code_text(Path(path).read_text(), str(path))


@lru_cache(maxsize=None)
def _code_text(source: str, filename: str) -> bytes:
    return ast.dump(_strip_docstrings(ast.parse(source, filename=filename)), annotate_fields=False).encode()


@lru_cache(maxsize=None)
def log_only_imports(path: Path) -> frozenset[str]:
    """The modules a file declares, in a module-level `LOG_ONLY_IMPORTS = (...)` of string
    constants, to use only for its log's text (empty when it declares none)."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["LOG_ONLY_IMPORTS"]:
            value = ast.literal_eval(node.value)
            if not isinstance(value, (tuple, list, frozenset, set)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{path}: LOG_ONLY_IMPORTS must be a tuple of module names, got {value!r}")
            return frozenset(value)
    return frozenset()


def code_files(*entries: str | Path, root: str | Path = ROOT, follow_log_only: bool = True) -> list[Path]:
    """Every pwprune source file under `root` that the given entry files (scripts or modules, as
    paths) can run, the entries themselves included, sorted. With follow_log_only=False, an import that
    its file lists in LOG_ONLY_IMPORTS is not followed (what code_hash covers)."""
    root = Path(root).resolve()
    seen: set[Path] = set()
    todo = [Path(e).resolve() for e in entries]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        skip = frozenset() if follow_log_only else log_only_imports(f)
        for name in _imports(f, root):
            if any(name == s or name.startswith(s + ".") for s in skip):
                continue
            parts = name.split(".")
            # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            for i in range(1, len(parts) + 1):
                mf = module_file(".".join(parts[:i]), root)
                if mf is not None and mf not in seen:
                    todo.append(mf)
    return sorted(seen)


def module_names(files, root: str | Path = ROOT) -> list[str]:
    """Dotted module names of pwprune source files (entries outside the package are dropped)."""
    root = Path(root).resolve()
    out = []
    for f in files:
        f = Path(f).resolve()
        if not f.is_relative_to(root / PACKAGE):
            continue
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return sorted(out)


def code_hash(*entries: str | Path, root: str | Path = ROOT) -> str:
    """16 hex digits of sha256 over the pwprune files under `root` that `entries` can run: their
    package paths and code_text (comments, docstrings and layout left out). Entry files outside
    the package (workflow scripts) contribute their imports only: Snakemake tracks a rule's own
    script itself. LOG_TEXT_ONLY modules are skipped, and so is a module that the code reaches
    only through files that list it in their LOG_ONLY_IMPORTS."""
    root = Path(root).resolve()
    h = hashlib.sha256()
    for f in code_files(*entries, root=root, follow_log_only=False):
        if not f.is_relative_to(root / PACKAGE) or set(module_names([f], root)) & LOG_TEXT_ONLY:
            continue
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(code_text(f))
    return h.hexdigest()[:16]
