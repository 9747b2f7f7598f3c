"""Gather every run's outputs into one Dataset on the study grid (DESIGN 5, 8).

Grid: dataset x seed x factors (+ the extra dims of each variable: depth, intervention,
class). Which file feeds which summary variable is declared once, in
``study.RUN_STAGES``. A run the config asks for whose files are missing is an error naming
the files; cells of combinations the config does not run stay NaN and are marked by
``ran``. Run outputs made from different configs are refused (provenance).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import provenance as prov
from .config import StudyConfig
from .errors import InputError
from .io import read_netcdf
from .study import FACTOR_NAMES, RUN_STAGES, Combination, run_path


def run_dir(cfg: StudyConfig, dataset: str, seed: int, combo: str) -> Path:
    return Path(run_path(cfg.results_dir, dataset, seed, combo))


def _runs(cfg: StudyConfig) -> list[tuple[str, int, Combination]]:
    combos = [Combination.parse(c) for c in cfg.combination_names()]
    return [(d, s, c) for d in cfg.datasets for s in cfg.seeds for c in combos]


def _check_complete(cfg: StudyConfig) -> None:
    files = [f"{s.output}" for s in RUN_STAGES] + ["train_log.csv"]
    missing = [
        str(run_dir(cfg, d, s, c.name) / f)
        for d, s, c in _runs(cfg)
        for f in files
        if not (run_dir(cfg, d, s, c.name) / f).exists()
    ]
    if missing:
        raise InputError(
            f"{len(missing)} run output(s) missing, e.g. {missing[:5]}; run the workflow "
            "(snakemake) so every dataset x seed x combination is complete before aggregating."
        )


def run_aggregate(cfg: StudyConfig) -> xr.Dataset:
    """summary.nc: every summary variable of study.RUN_STAGES on the study grid."""
    _check_complete(cfg)
    combos = sorted({c for _, _, c in _runs(cfg)}, key=lambda c: c.name)
    levels = {f: sorted({c.levels()[f] for c in combos}) for f in FACTOR_NAMES}
    grid = {"dataset": list(cfg.datasets), "seed": list(cfg.seeds), **levels}
    shape = tuple(len(v) for v in grid.values())
    arrays: dict[str, np.ndarray] = {}
    extra: dict[str, dict[str, np.ndarray]] = {}  # variable -> its own dims' coordinates
    ran = np.zeros(shape, dtype=bool)
    records: list[tuple[str, dict]] = []
    seconds: dict[str, float] = {}
    devices: set[str] = set()
    for d, s, c in _runs(cfg):
        lv = c.levels()
        at = (grid["dataset"].index(d), grid["seed"].index(s))
        at += tuple(levels[f].index(lv[f]) for f in FACTOR_NAMES)
        rd = run_dir(cfg, d, s, c.name)
        remedy = f"Re-run the workflow for {rd}."
        for stage in RUN_STAGES:
            path = rd / stage.output
            ds = read_netcdf(path, remedy)
            records.append((str(path), prov.of_attrs(ds.attrs)))
            seconds[stage.rule] = seconds.get(stage.rule, 0.0) + float(
                ds.attrs.get(prov.SECONDS_ATTR, 0.0)
            )
            if prov.DEVICE_ATTR in ds.attrs:
                devices.add(str(ds.attrs[prov.DEVICE_ATTR]))
            for name, var in stage.summary.items():
                da = ds[var.source]
                if name not in arrays:
                    extra[name] = {dim: da[dim].values for dim in da.dims}
                    arrays[name] = np.full(shape + da.shape, np.nan)
                arrays[name][at] = da.sel(extra[name]).values if da.dims else float(da)
        log = pd.read_csv(rd / "train_log.csv")
        seconds["meta_train"] = seconds.get("meta_train", 0.0) + float(log["seconds"].iloc[-1])
        ran[at] = True
    dims = tuple(grid)
    coords: dict[str, object] = dict(grid)
    data = {}
    for stage in RUN_STAGES:
        for name, var in stage.summary.items():
            coords.update(extra[name])
            data[name] = (
                dims + tuple(extra[name]),
                arrays[name],
                {"units": var.units, "long_name": var.long_name},
            )
    data["ran"] = (dims, ran, {"long_name": "this combination was run (others are NaN by design)"})
    out = xr.Dataset(data, coords=coords)
    out.attrs["config"] = cfg.to_json()
    out.attrs.update(prov.netcdf_attrs(prov.combine({}, records), "aggregate"))
    out.attrs.update(
        made_by_attrs(
            prov.git_commit(), json.dumps(prov.versions(), sort_keys=True), devices, seconds
        )
    )
    return out


def made_by_attrs(
    commit: str, versions_json: str, devices: set[str], seconds: dict[str, float]
) -> dict[str, str]:
    """summary.nc's attributes beside the config record: commit, package versions, devices
    and compute seconds per stage (FINDINGS.md's provenance section reads them)."""
    return {
        "inrroute_git_commit": commit,
        "inrroute_versions_json": versions_json,
        prov.DEVICE_ATTR: ", ".join(sorted(devices)) or "unknown",
        "inrroute_wall_seconds_json": json.dumps(
            {k: round(v, 1) for k, v in seconds.items()}, sort_keys=True
        ),
    }


def pool_summaries(parts: list[tuple[str, xr.Dataset]]) -> xr.Dataset:
    """summary.nc files of finished studies on different datasets -> one summary on their
    union, for one analysis per dataset and pooled (``inrroute pool``). Each dataset keeps
    the recipe its study ran with: the provenance keeps the config values all studies share
    and lists each study's own (source, config hash, commit, differing values)."""
    if len(parts) < 2:
        raise InputError(f"inrroute pool needs two or more summary.nc files, got {len(parts)}")
    where: dict[str, str] = {}
    for path, ds in parts:
        for name in map(str, ds["dataset"].values):
            if name in where:
                raise InputError(
                    f"dataset {name!r} is in both {where[name]} and {path}: pool studies of "
                    "different datasets (one study per dataset)"
                )
            where[name] = path
    shared, own = prov.pooled((path, prov.of_attrs(ds.attrs)) for path, ds in parts)
    for entry, (path, ds) in zip(own, parts, strict=True):
        entry["datasets"] = [str(d) for d in ds["dataset"].values]
        entry["config_hash"] = str(ds.attrs.get(prov.HASH_ATTR, "unknown"))
        entry["git_commit"] = str(ds.attrs.get("inrroute_git_commit", "unknown"))
    bare = [ds.copy() for _, ds in parts]
    for ds in bare:
        ds.attrs = {}
    # join="outer": a seed or tokenflow depth that only one study has stays NaN elsewhere
    out = xr.concat(bare, dim="dataset", join="outer", combine_attrs="override")
    out["ran"] = out["ran"].fillna(False).astype(bool)
    for var in out.variables.values():
        # the first file's on-disk encoding (e.g. string width 6 for "digits") would
        # truncate the other studies' names when written
        var.encoding = {}
    seconds: dict[str, float] = {}
    for _, ds in parts:
        for k, v in json.loads(ds.attrs.get("inrroute_wall_seconds_json", "{}")).items():
            seconds[k] = seconds.get(k, 0.0) + v
    out.attrs.update(prov.netcdf_attrs(shared, "pool"))
    out.attrs[prov.POOLED_ATTR] = json.dumps(own, sort_keys=True)
    out.attrs.update(
        made_by_attrs(
            ", ".join(sorted({e["git_commit"] for e in own})),
            parts[0][1].attrs.get("inrroute_versions_json", "{}"),
            {str(ds.attrs.get(prov.DEVICE_ATTR, "unknown")) for _, ds in parts},
            seconds,
        )
    )
    return out
