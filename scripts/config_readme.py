#!/usr/bin/env python3
"""Write config/README.md from the config schema: every key, its default, allowed values
and description, so the catalog's usage page and the schema cannot disagree.

    python scripts/config_readme.py > config/README.md

tests/test_catalog.py fails when the committed file is stale. Needs only PyYAML.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"

HEADER = """\
<!-- Generated from workflow/schemas/config.schema.yaml by
     `python scripts/config_readme.py > config/README.md`; do not edit by hand. -->
# Configuration

A study is one config file. Every key has a default (in
`workflow/schemas/config.schema.yaml`), so a config names only what it changes. Pick one
with `--configfile` (written as `--configfile=FILE` or before the targets, since
`--configfile` takes several values):

```bash
snakemake --cores all --configfile=config/smoke.yaml
```

Bad values stop the workflow before any job starts, with a message naming the key, the
value and what is allowed; `inrroute check-config --config FILE` checks a file by hand.

Shipped configs:

| file | what |
|---|---|
{configs}

Keys below are written with dots for nesting: `model.width` is `width` under `model:`.
"""


def cell(text: str) -> str:
    """Text for one Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def literal(value) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, dict)):
        return f"`{yaml.safe_dump(value, default_flow_style=True, width=1000).strip()}`"
    return f"`{value}`"


def type_of(spec: dict) -> str:
    kind = spec.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "items" in spec:
        return "list of " + type_of(spec["items"])
    return " or ".join(k for k in kinds if k)


def allowed(spec: dict) -> str:
    parts = []
    if "enum" in spec:
        parts.append("one of " + ", ".join(literal(v) for v in spec["enum"]))
    for key, sign in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in spec:
            parts.append(f"{sign} {spec[key]}")
    if "pattern" in spec:
        parts.append(f"matches `{spec['pattern']}`")
    if "propertyNames" in spec and "enum" in spec["propertyNames"]:
        names = ", ".join(literal(v) for v in spec["propertyNames"]["enum"])
        parts.append(f"keys: {names}")
    items = spec.get("items")
    if items:
        inner = allowed(items)
        if inner:
            parts.append(f"each {inner}")
        if "minItems" in spec:
            parts.append(f"at least {spec['minItems']}")
        if spec.get("uniqueItems"):
            parts.append("no repeats")
    return "; ".join(parts)


def rows(spec: dict, prefix: str = "") -> list[tuple[str, dict]]:
    """(dotted key, spec) of every leaf key; patternProperties become `<name>`."""
    out = []
    for name, sub in spec.get("properties", {}).items():
        key = f"{prefix}{name}"
        if sub.get("type") == "object" and ("properties" in sub or "patternProperties" in sub):
            out.extend(rows(sub, f"{key}."))
        else:
            out.append((key, sub))
    for sub in spec.get("patternProperties", {}).values():
        names = spec.get("propertyNames", {}).get("enum")
        placeholder = "<" + ("|".join(names) if names else "name") + ">"
        out.extend(rows(sub, f"{prefix}{placeholder}."))
    return out


def table(entries: list[tuple[str, dict]]) -> list[str]:
    lines = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for key, spec in entries:
        default = literal(spec["default"]) if "default" in spec else "(required)"
        lines.append(
            f"| `{cell(key)}` | {cell(type_of(spec))} | {cell(default)} "
            f"| {cell(allowed(spec))} | {cell(spec.get('description', ''))} |"
        )
    return lines


def shipped_configs() -> str:
    lines = []
    for path in sorted((ROOT / "config").glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        what = first.lstrip("#").strip() if first.startswith("#") else ""
        lines.append(f"| `config/{path.name}` | {cell(what)} |")
    return "\n".join(lines)


def render(schema: dict) -> str:
    out = [HEADER.format(configs=shipped_configs())]
    top = [(k, s) for k, s in schema["properties"].items() if s.get("type") != "object"]
    out.append("## Study\n")
    out.extend(table(top))
    for name, spec in schema["properties"].items():
        if spec.get("type") != "object":
            continue
        out.append(f"\n## `{name}`\n")
        if spec.get("description"):
            out.append(cell(spec["description"]) + "\n")
        if "default" in spec and spec["default"] != {}:
            out.append(f"Default: {literal(spec['default'])}\n")
        out.extend(table(rows(spec, f"{name}.")))
    return "\n".join(out) + "\n"


def main() -> None:
    with open(SCHEMA) as f:
        schema = yaml.safe_load(f)
    sys.stdout.write(render(schema))


if __name__ == "__main__":
    main()
