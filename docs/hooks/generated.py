"""MkDocs hook: the pages that are generated at build time, so that they cannot drift.

- `configuration-reference.md`: every key of an experiment, from workflow/schemas/params.schema.yaml
  (type, default, allowed values, description). A key without a description stops the build.
- `pipeline.svg`: the rule graph of the default run (`snakemake results/figures/all --rulegraph dot`,
  drawn by Graphviz's `dot`).

Neither is written into docs/: both are handed to MkDocs as generated files. Environment:
PWPRUNE_DOCS_SCHEMA names another schema file (tests/test_docs_site.py builds with a copy that
has an extra key).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"
REFERENCE_PAGE = "configuration-reference.md"
RULEGRAPH_SVG = "pipeline.svg"
RULEGRAPH_TARGET = "results/figures/all"


# ---------------------------------------------------------------- the configuration reference


def _names():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from pwprune import config, names  # light: no torch (pwprune/names.py)

    return config, names


def load_schema(path) -> dict:
    """The schema with pwprune's placeholders resolved (pwprune.config.resolve_placeholders), except
    `x-properties`, which stays one documented key per registry (`<method>`) instead of one per name."""
    config, names = _names()
    raw = yaml.safe_load(Path(path).read_text())

    def keep_name_keys(node):
        if isinstance(node, list):
            for item in node:
                keep_name_keys(item)
        elif isinstance(node, dict):
            if "x-properties" in node:
                spec = node.pop("x-properties")
                node["additionalProperties"] = spec["schema"]
                node["x-doc-key"] = spec["names"].lower().rstrip("s")  # METHODS -> <method>
                node["x-doc-names"] = list(getattr(names, spec["names"]))
            for value in node.values():
                keep_name_keys(value)

    keep_name_keys(raw)
    return config.resolve_placeholders(raw)


def _ref_name(spec) -> str | None:
    ref = spec.get("$ref") if isinstance(spec, dict) else None
    return ref.rsplit("/", 1)[-1] if ref else None


def _deref(spec: dict, root: dict) -> dict:
    """spec with its $ref's target merged under its own keys (a key's own description wins)."""
    name = _ref_name(spec)
    if name is None:
        return spec
    merged = copy.deepcopy(_deref(root["$defs"][name], root))
    merged.update({k: v for k, v in spec.items() if k != "$ref"})
    return merged


def _code(value) -> str:
    return "`" + yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip() + "`"


def _type(spec: dict, root: dict) -> str:
    spec = _deref(spec, root)
    kind = spec.get("type")
    if kind is None and "enum" in spec:
        kinds = sorted({type(v).__name__ for v in spec["enum"]})
        kind = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(kinds[0], kinds[0])
        kind = kind if len(kinds) == 1 else " or ".join(kinds)
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and "items" in spec:
        return f"list of {_type(spec['items'], root)}"
    return kind or "any"


def _bound(spec: dict, inclusive: str, inclusive_sign: str, exclusive: str, exclusive_sign: str):
    if inclusive in spec:
        return inclusive_sign, spec[inclusive]
    if exclusive in spec:
        return exclusive_sign, spec[exclusive]
    return None


def _allowed(spec: dict, root: dict) -> str:
    spec = _deref(spec, root)
    if spec.get("type") == "array" and "items" in spec:
        parts = [_allowed(spec["items"], root)]
        if spec.get("minItems"):
            parts.append(f"at least {spec['minItems']} item{'s' if spec['minItems'] > 1 else ''}")
        if spec.get("uniqueItems"):
            parts.append("no repeats")
        return "; ".join(p for p in parts if p)
    if "enum" in spec:
        return ", ".join(_code(v) for v in spec["enum"])
    parts = []
    low = _bound(spec, "minimum", "≥", "exclusiveMinimum", ">")
    high = _bound(spec, "maximum", "≤", "exclusiveMaximum", "<")
    if low and high:
        parts.append(f"{low[1]} {'<' if low[0] == '>' else '≤'} x {high[0]} {high[1]}")
    elif low or high:
        parts.append(f"{(low or high)[0]} {(low or high)[1]}")
    if "pattern" in spec:
        parts.append(f"matches `{spec['pattern']}`")
    if spec.get("minProperties"):
        parts.append(f"at least {spec['minProperties']} entr{'ies' if spec['minProperties'] > 1 else 'y'}")
    return "; ".join(parts)


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _anchor(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")


def _is_block(spec: dict) -> bool:
    """A key whose value is a mapping of further keys (documented in its own section)."""
    return spec.get("type") == "object" and ("properties" in spec or isinstance(spec.get("additionalProperties"), dict))


def _joined(paths: list[str]) -> str:
    """experiments.<name>.resources.{prepare,train}: the paths that share one block, in one name."""
    heads = {p.rsplit(".", 1)[0] for p in paths}
    if len(paths) > 1 and len(heads) == 1:
        return f"{heads.pop()}.{{{','.join(p.rsplit('.', 1)[1] for p in paths)}}}"
    return ", ".join(paths)


def method_defaults() -> dict:
    """prune.<method>.<option> -> the value pwprune.pruning uses when the key is unset (imports torch)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from pwprune.pruning.target import COMMON_OPTIONS, OPTIONS

    return {m: {**COMMON_OPTIONS, **OPTIONS[m]} for m in OPTIONS}


def reference_markdown(schema: dict, source: str = "workflow/schemas/params.schema.yaml", code_defaults=None) -> str:
    """The configuration reference page. Raises PluginError naming every key without a description.
    code_defaults: method -> option -> default (method_defaults()), shown where the schema has none."""
    code_defaults = code_defaults or {}
    shared: dict[str, list[str]] = {}  # $defs name -> the paths that use it (first pass)

    def build():
        sections: dict[str, dict] = {}  # anchor -> {"paths", "spec", "rows"}
        missing: list[str] = []

        def section(anchor: str, path: str, spec: dict, ref: str | None = None) -> str:
            if anchor in sections:
                sections[anchor]["paths"].append(path)
                return anchor
            sections[anchor] = {"paths": [path], "spec": spec, "rows": [], "ref": ref}
            rows = sections[anchor]["rows"]
            here = _joined(shared.get(ref, [path])) if ref else path
            required = set(spec.get("required", ()))
            children = list(spec.get("properties", {}).items())
            if isinstance(spec.get("additionalProperties"), dict):
                children.append((f"<{spec.get('x-doc-key', 'name')}>", spec["additionalProperties"]))
            for key, child in children:
                child_path = f"{here}.{key}"
                resolved = _deref(child, schema)
                description = resolved.get("description")
                if not description or not str(description).strip():
                    missing.append(child_path)
                if key.startswith("<"):
                    names = spec.get("x-doc-names")
                    pattern = _allowed({"type": "string", **spec.get("propertyNames", {})}, schema)
                    allowed = "; ".join(p for p in (", ".join(_code(n) for n in names or ()), pattern) if p)
                else:
                    allowed = _allowed(child, schema)
                child_ref = _ref_name(child)
                if _is_block(resolved):
                    own = _deref(schema["$defs"][child_ref], schema) if child_ref else resolved
                    target = section(child_ref or _anchor(child_path), child_path, own, child_ref)
                    kind = f"[mapping](#{_anchor(target)})"
                else:
                    kind = _type(child, schema)
                parts = child_path.lstrip(".").split(".")
                if "default" in resolved:
                    default = _code(resolved["default"])
                elif key in required:
                    default = "*required*"
                elif len(parts) == 5 and parts[2] == "prune" and key in code_defaults.get(parts[3], {}):
                    value = code_defaults[parts[3]][key]
                    default = "unset" if value is None else f"{_code(value)} (code)"
                else:
                    default = ""
                rows.append((key, kind, default, allowed, description or ""))
            return anchor

        section("top-level", "", schema)
        return sections, missing

    sections, missing = build()
    for sec in sections.values():
        if sec["ref"]:
            shared[sec["ref"]] = sec["paths"]
    sections, missing = build()  # again, now naming the shared blocks' keys by all their paths
    if missing:
        raise PluginError(
            f"{source}: {len(missing)} key(s) without a description (every key of the schema needs one, "
            "for the configuration reference): " + ", ".join(m.lstrip(".") for m in missing)
        )

    out = [
        "# Configuration reference",
        "",
        f"Every key of `params.yaml`, generated from `{source}` when this site is built (a key",
        "without a description stops the build), so it cannot drift from what Snakemake validates.",
        "*required*: the key has no default and must be given; a default marked *(code)* is what",
        "`pwprune.pruning` uses when the key is unset (the schema fills the others in); `x` stands for",
        "the value, `<name>` for a key you choose. Lists of names come from `pwprune/names.py`. A",
        "mapping's keys have their own section. The keys of `dataset` beyond `kind` depend on the",
        "kind: [Datasets](datasets.md). How the blocks fit together: [Configuration](configuration.md).",
        "",
    ]
    for anchor, sec in sections.items():
        title = "`params.yaml`" if anchor == "top-level" else f"`{_joined(sec['paths']).lstrip('.')}`"
        out += [f"## {title} {{#{_anchor(anchor)}}}", ""]
        if sec["spec"].get("description") and anchor != "top-level":
            out += [_cell(sec["spec"]["description"]), ""]
        out += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        for key, kind, default, allowed, desc in sec["rows"]:
            out.append(f"| `{key}` | {kind} | {default} | {_cell(allowed)} | {_cell(desc)} |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- the rule graph


def rulegraph_svg() -> bytes:
    """The default run's rule graph, drawn by Graphviz. Fails the build without `dot` or Snakemake."""
    dot = shutil.which("dot")
    if dot is None:
        raise PluginError("Graphviz's `dot` is not on the PATH (apt-get install graphviz): it draws the rule graph")
    graph = subprocess.run(
        [sys.executable, "-m", "snakemake", RULEGRAPH_TARGET, "--rulegraph", "dot", "--quiet", "all"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    start = graph.stdout.find("digraph")
    if graph.returncode != 0 or start < 0:
        raise PluginError(f"snakemake --rulegraph failed (exit {graph.returncode}):\n{graph.stderr[-3000:]}")
    svg = subprocess.run([dot, "-Tsvg"], input=graph.stdout[start:].encode(), capture_output=True)
    if svg.returncode != 0:
        raise PluginError(f"dot failed: {svg.stderr.decode()[-2000:]}")
    return svg.stdout


# ---------------------------------------------------------------- MkDocs events


def on_files(files, config):
    schema_path = Path(os.environ.get("PWPRUNE_DOCS_SCHEMA") or SCHEMA)
    page = reference_markdown(load_schema(schema_path), source=_display(schema_path), code_defaults=method_defaults())
    files.append(File.generated(config, REFERENCE_PAGE, content=page))
    files.append(File.generated(config, RULEGRAPH_SVG, content=rulegraph_svg()))
    return files


def on_config(config):
    config["watch"].append(str(SCHEMA))  # mkdocs serve: rebuild when the schema changes
    return config


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)
