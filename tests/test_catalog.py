"""Snakemake workflow catalog conformance: config/README.md generated from the schema and
up to date, .snakemake-workflow-catalog.yml, LICENSE."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def generated() -> str:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_readme.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_config_readme_is_up_to_date():
    committed = (ROOT / "config" / "README.md").read_text()
    assert committed == generated(), (
        "config/README.md is stale: python scripts/config_readme.py > config/README.md"
    )


def leaf_keys(spec: dict, prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    subs = list(spec.get("properties", {}).items())
    subs += [("<", s) for s in spec.get("patternProperties", {}).values()]
    for name, sub in subs:
        key = f"{prefix}{name}"
        if sub.get("type") == "object" and ("properties" in sub or "patternProperties" in sub):
            out += leaf_keys(sub, f"{key}.")
        else:
            out.append((key, sub))
    return out


def test_every_key_documented_with_default_and_description():
    schema = yaml.safe_load(SCHEMA.read_text())
    readme = generated()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    keys = leaf_keys(schema)
    assert len(keys) > 30
    for key, spec in keys:
        assert "default" in spec, f"{key}: no default in the schema"
        assert spec.get("description"), f"{key}: no description in the schema"
        last = key.rsplit(".", 1)[-1]
        matching = [r for r in rows if f".{last}`" in r or f"`{last}`" in r]
        assert matching, key
    # allowed values reach the page
    assert "one of `combination`, `dataset`" in readme
    assert "`model.width` | integer | `32` | ≥ 1 |" in readme


def test_catalog_file():
    cat = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = cat["usage"]
    assert set(usage) <= {"mandatory-flags", "software-stack-deployment", "report"}
    assert usage["mandatory-flags"]["desc"]
    stack = usage["software-stack-deployment"]
    assert set(stack) <= {"conda", "singularity", "singularity+conda"}
    assert any(stack.values())
    assert stack["conda"] is (ROOT / "envs" / "inrroute.post-deploy.sh").exists()
    assert isinstance(usage["report"], bool)


def test_license():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "MIT" in (ROOT / "README.md").read_text()
