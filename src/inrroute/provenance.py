"""What made a file: the config values it depends on, chained from its inputs.

Each output records the config keys of the rule that made it (study.RULE_CONFIG) merged
with the records of its input files, so a per-run file carries everything from staging to
its own stage, and summary.nc everything. The record is the JSON of dotted key -> value
and its hash, as netCDF attributes, inside model.pt, or in a ``provenance.json`` sidecar
(statistics tables). Two inputs that disagree on a key were made from different configs:
combining them is an error naming the key and the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import StudyConfig
from .errors import InputError
from .study import RULE_CONFIG

CONFIG_ATTR = "inrroute_config"
HASH_ATTR = "inrroute_config_hash"
RULE_ATTR = "inrroute_rule"
DEVICE_ATTR = "inrroute_device"
SECONDS_ATTR = "inrroute_seconds"
SIDECAR = "provenance.json"
PACKAGES = (
    "inrroute",
    "torch",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "statsmodels",
    "xarray",
    "numpy",
    "scikit-learn",
)


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """Value of a dotted key in a nested mapping (None where a level is missing)."""
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def rule_values(cfg: StudyConfig, rule: str, dataset: str | None = None) -> dict[str, Any]:
    """The config values ``rule`` depends on, keyed by dotted name (``{dataset}`` filled)."""
    if rule not in RULE_CONFIG:
        raise ValueError(f"rule {rule!r} has no entry in study.RULE_CONFIG")
    config = cfg.to_dict()
    out = {}
    for key in RULE_CONFIG[rule]:
        if "{dataset}" in key:
            if dataset is None:
                raise ValueError(f"rule {rule!r} key {key!r} needs the dataset")
            key = key.format(dataset=dataset)
        out[key] = lookup(config, key)
    return out


def canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def digest(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(values).encode()).hexdigest()[:16]


def same_value(a: Any, b: Any) -> bool:
    """Two config values are the same when their canonical JSON is (1 == 1.0, key order)."""
    return canonical({"v": a}) == canonical({"v": b})


def combine(own: Mapping[str, Any], inputs: Iterable[tuple[str, Mapping[str, Any]]]) -> dict:
    """``own`` merged with each (file name, record) of the inputs; a conflict is an error."""
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, record in [*inputs, ("this stage's config", own)]:
        for key, value in record.items():
            if key in merged and not same_value(merged[key], value):
                raise InputError(
                    f"inputs were made from different configs: {key} = {merged[key]!r} in "
                    f"{source[key]} but {value!r} in {name}. Re-run the workflow so every "
                    "output comes from one config (snakemake reruns what a change affects)."
                )
            merged.setdefault(key, value)
            source.setdefault(key, name)
    return dict(sorted(merged.items()))


POOLED_ATTR = "inrroute_pooled_from_json"


def pooled(records: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[dict, list[dict]]:
    """Records of whole studies analysed together (``inrroute pool``) -> the values they
    share, and per study (source name) the values that are its own. Unlike ``combine``,
    disagreement is expected: each dataset keeps the recipe it was run with."""
    records = list(records)
    first = records[0][1] if records else {}
    shared = {
        k: v for k, v in first.items() if all(k in r and same_value(r[k], v) for _, r in records)
    }
    own = [
        {"source": name, "values": {k: v for k, v in r.items() if k not in shared}}
        for name, r in records
    ]
    return dict(sorted(shared.items())), own


def netcdf_attrs(
    values: Mapping[str, Any], rule: str, device: str | None = None, seconds: float | None = None
) -> dict[str, str | float]:
    attrs: dict[str, str | float] = {
        RULE_ATTR: rule,
        CONFIG_ATTR: canonical(values),
        HASH_ATTR: digest(values),
    }
    if device is not None:
        attrs[DEVICE_ATTR] = device
    if seconds is not None:
        attrs[SECONDS_ATTR] = round(float(seconds), 3)
    return attrs


def stamp(ds, rule: str, own: Mapping, inputs: Iterable, device=None, start=None) -> Any:
    """``ds`` with the record of what made it: ``own`` values plus its inputs' records,
    the device and the seconds since ``start`` (a time.perf_counter() value)."""
    import time

    seconds = time.perf_counter() - start if start is not None else None
    ds.attrs.update(netcdf_attrs(combine(own, inputs), rule, device and str(device), seconds))
    return ds


def of_model(model: Any) -> dict[str, Any]:
    """The config record of a loaded model (without its own device and seconds)."""
    return {k: v for k, v in model.provenance.items() if not k.startswith("inrroute_")}


def sidecar_text(record: Mapping[str, Any], rule: str) -> str:
    """provenance.json beside CSV tables, which have no attributes of their own."""
    stamp_ = {**netcdf_attrs(record, rule), CONFIG_ATTR: dict(record)}
    return json.dumps(stamp_, indent=2, sort_keys=True) + "\n"


def of_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The config record stored in a netCDF file's attributes ({} for files made before)."""
    text = attrs.get(CONFIG_ATTR)
    return json.loads(text) if text else {}


def git_commit(root: str | os.PathLike | None = None) -> str:
    """The commit of the workflow checkout ``root`` (default: the working directory, where
    snakemake runs), with '+dirty' for uncommitted changes, or 'not a git checkout'."""
    root = Path(root or Path.cwd())
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return commit + ("+dirty" if dirty else "") if commit else "not a git checkout"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Everything a file says about what made it (for ``inrroute provenance``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.suffix == ".nc":
        from .io import read_netcdf_attrs

        attrs = read_netcdf_attrs(path)
        return {
            k: (json.loads(v) if k == CONFIG_ATTR or str(k).endswith("_json") else v)
            for k, v in attrs.items()
            if str(k).startswith("inrroute")
        }
    if path.suffix == ".pt":
        from .io import load_torch

        record = dict(load_torch(path).get("provenance", {}))
        own = {k: v for k, v in record.items() if not k.startswith("inrroute_")}
        extra = {k: v for k, v in record.items() if k.startswith("inrroute_")}
        return {**extra, RULE_ATTR: "meta_train", CONFIG_ATTR: own, HASH_ATTR: digest(own)}
    sidecar = path.parent / SIDECAR
    if sidecar.exists():
        record = json.loads(sidecar.read_text())
        return {"sidecar": str(sidecar), **record}
    raise InputError(
        f"{path} carries no provenance (netCDF attributes, model.pt, or a {SIDECAR} beside it)"
    )


def markdown(attrs: Mapping[str, Any]) -> str:
    """The provenance section of FINDINGS.md, from summary.nc's attributes."""
    record = of_attrs(attrs)
    versions_ = json.loads(attrs.get("inrroute_versions_json", "{}"))
    seconds = json.loads(attrs.get("inrroute_wall_seconds_json", "{}"))
    lines = [
        "## Provenance",
        "",
        f"- config hash: `{attrs.get(HASH_ATTR, 'unknown')}` (values: `inrroute provenance`)",
        f"- git commit: `{attrs.get('inrroute_git_commit', 'unknown')}`",
        f"- device: {attrs.get(DEVICE_ATTR, 'unknown')}",
        "- package versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions_.items())),
        "- compute seconds per stage, summed over runs: "
        + (", ".join(f"{k} {v:.0f} s" for k, v in sorted(seconds.items())) or "not recorded"),
        f"- config keys recorded: {len(record)}",
    ]
    return "\n".join(lines) + "\n"
