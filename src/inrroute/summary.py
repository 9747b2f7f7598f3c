"""Gather every run's outputs into one Dataset on the study grid (DESIGN 5, 8).

Grid: dataset x seed x cluster x route x bias_route x dense_fit (+ depth, intervention,
class). A run the config asks for whose files are missing is an error naming the files;
cells of combinations the config does not run stay NaN and are marked by ``ran``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .config import FACTOR_NAMES, Combination, StudyConfig
from .errors import InputError
from .io import read_netcdf
from .probes import GEOMETRY_KEYS as GEOMETRY

RUN_FILES = ("reader.nc", "geometry.nc", "fresh_reader.nc", "tokenflow.nc", "interventions.nc")
ATTRS = {
    "reader_accuracy": ("1", "test accuracy of the trained reader"),
    "psnr": ("dB", "mean test PSNR of the per-image SIREN fits, on [0, 1]"),
    "knn_consistency": (
        "1",
        "kNN class consistency of test phi (k nearest, cosine, leave-one-out)",
    ),
    "knn_accuracy": ("1", "kNN leave-one-out majority-vote accuracy of test phi"),
    "ncm_accuracy": ("1", "nearest-class-mean accuracy (train means, cosine) on test phi"),
    "linear_probe_accuracy": (
        "1",
        "logistic-regression probe fitted on train phi, scored on test phi",
    ),
    "silhouette": ("1", "silhouette score (cosine) of test phi by class"),
    "fisher_ratio": ("1", "trace(S_between) / trace(S_within) of test phi"),
    "fresh_reader_accuracy": ("1", "test accuracy of a fresh reader trained on frozen train phi"),
    "tokenflow_consistency": (
        "1",
        "kNN class consistency of the reader's pooled representation per depth",
    ),
    "intervention_accuracy": ("1", "trained-reader test accuracy under a bias-column intervention"),
    "per_class_accuracy": ("1", "trained-reader test accuracy per class"),
}


def run_dir(cfg: StudyConfig, dataset: str, seed: int, combo: str) -> Path:
    return Path(cfg.results_dir) / dataset / f"seed{seed}" / combo


def gather(cfg: StudyConfig) -> xr.Dataset:
    combos = [Combination.parse(c) for c in cfg.combination_names()]
    levels = {f: sorted({c.levels()[f] for c in combos}) for f in FACTOR_NAMES}
    missing = [
        str(run_dir(cfg, d, s, c.name) / f)
        for d in cfg.datasets
        for s in cfg.seeds
        for c in combos
        for f in RUN_FILES
        if not (run_dir(cfg, d, s, c.name) / f).exists()
    ]
    if missing:
        raise InputError(
            f"{len(missing)} run output(s) missing, e.g. {missing[:5]}; run the workflow "
            "(snakemake) so every dataset x seed x combination is complete before aggregating."
        )
    first = run_dir(cfg, cfg.datasets[0], cfg.seeds[0], combos[0].name)
    depths = read_netcdf(first / "tokenflow.nc")["depth"].values
    interventions = read_netcdf(first / "interventions.nc")["intervention"].values
    classes = read_netcdf(first / "reader.nc")["class"].values
    grid = {"dataset": list(cfg.datasets), "seed": list(cfg.seeds), **levels}
    shape = tuple(len(v) for v in grid.values())
    scalars = {
        k: np.full(shape, np.nan)
        for k in ("reader_accuracy", "psnr", *GEOMETRY, "fresh_reader_accuracy")
    }
    tokenflow = np.full(shape + (len(depths),), np.nan)
    interv = np.full(shape + (len(interventions),), np.nan)
    per_class = np.full(shape + (len(classes),), np.nan)
    ran = np.zeros(shape, dtype=bool)
    for di, d in enumerate(cfg.datasets):
        for si, s in enumerate(cfg.seeds):
            for c in combos:
                lv = c.levels()
                at = (di, si, *(levels[f].index(lv[f]) for f in FACTOR_NAMES))
                rd = run_dir(cfg, d, s, c.name)
                remedy = f"Re-run the workflow for {rd}."
                reader = read_netcdf(rd / "reader.nc", remedy)
                geometry = read_netcdf(rd / "geometry.nc", remedy)
                scalars["reader_accuracy"][at] = float(reader["accuracy"])
                scalars["psnr"][at] = float(reader["psnr"])
                for g in GEOMETRY:
                    scalars[g][at] = float(geometry[g])
                scalars["fresh_reader_accuracy"][at] = float(
                    read_netcdf(rd / "fresh_reader.nc", remedy)["accuracy"]
                )
                tokenflow[at] = (
                    read_netcdf(rd / "tokenflow.nc", remedy)["knn_consistency"]
                    .sel(depth=depths)
                    .values
                )
                interv[at] = (
                    read_netcdf(rd / "interventions.nc", remedy)["accuracy"]
                    .sel(intervention=interventions)
                    .values
                )
                per_class[at] = reader["per_class_accuracy"].values
                ran[at] = True
    dims = tuple(grid)
    data = {k: (dims, v) for k, v in scalars.items()}
    data["tokenflow_consistency"] = (dims + ("depth",), tokenflow)
    data["intervention_accuracy"] = (dims + ("intervention",), interv)
    data["per_class_accuracy"] = (dims + ("class",), per_class)
    data["ran"] = (dims, ran, {"long_name": "this combination was run (others are NaN by design)"})
    ds = xr.Dataset(
        data, coords={**grid, "depth": depths, "intervention": interventions, "class": classes}
    )
    for name, (units, long_name) in ATTRS.items():
        ds[name].attrs.update(units=units, long_name=long_name)
    ds.attrs["config"] = cfg.to_json()
    return ds
