"""Synthetic ``results/summary.nc``-shaped Datasets with known, planted structure.

Shared by the statistics and figure tests: ``make_summary`` builds the gathered summary of
DESIGN.md section 5/8 without training anything. Values are plausible (accuracies in
[0, 1]) and deterministic for a given ``seed``.

Built-in structure (always present, so tests can rely on it):

- each run has a latent quality ``q ~ N(0, 1)``; ``reader_accuracy = 0.8 + 0.02 q``
  (+ the planted ``effect``), so runs differ and correlations are defined;
- ``tokenflow_consistency`` at depth index i of D is
  ``0.3 + 0.5 * w_i * reader_accuracy + (1 - w_i) * U(0, 0.1) + N(0, 1e-4)`` with
  ``w = linspace(0, 1, D)``: independent of accuracy at the first depth, equal to an
  affine function of it (plus tiny noise) at the last depth (the routing curve);
- the geometry metrics are noisy, weakly accuracy-related values in their usual ranges;
- ``intervention_accuracy[none] == reader_accuracy``; the bias interventions drop a lot,
  the ``col_*`` controls a little.

Combinations not listed in ``combos`` are NaN on the grid (runs that were not made) and
``ran`` (bool, grid dims) is False there, as in ``inrroute.summary.run_aggregate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

from inrroute.config import FACTOR_NAMES as FACTORS
from inrroute.interventions import INTERVENTIONS

# Mean accuracy drop of each intervention relative to "none" (bias_only is a level).
_DROP = {
    "none": 0.0,
    "bias_zero": 0.30,
    "bias_shuffle": 0.25,
    "bias_mean": 0.10,
    "bias_only": 0.45,
    "col_zero": 0.01,
    "col_shuffle": 0.01,
}
_ATTRS = {
    "reader_accuracy": ("trained-reader test accuracy", "1"),
    "psnr": ("mean PSNR of the fits", "dB"),
    "knn_consistency": ("kNN class consistency of phi (cosine, k=10)", "1"),
    "knn_accuracy": ("kNN leave-one-out accuracy of phi", "1"),
    "ncm_accuracy": ("nearest-class-mean accuracy of phi", "1"),
    "linear_probe_accuracy": ("linear-probe accuracy of phi", "1"),
    "silhouette": ("silhouette of phi (cosine)", "1"),
    "fisher_ratio": ("Fisher ratio tr(S_b)/tr(S_w) of phi", "1"),
    "fresh_reader_accuracy": ("fresh-reader accuracy on frozen phi", "1"),
    "tokenflow_consistency": ("kNN class consistency of the reader's pooled state", "1"),
    "intervention_accuracy": ("trained-reader accuracy under a bias-column intervention", "1"),
    "per_class_accuracy": ("trained-reader per-class test accuracy", "1"),
}

Effect = Callable[..., float | Mapping[str, float]]


def _combo_list(combos: str | Iterable[Sequence[int]]) -> list[tuple[int, int, int, int]]:
    if isinstance(combos, str):
        if combos != "all":
            raise ValueError(f"combos={combos!r}: expected 'all' or a list of (c, r, b, d)")
        return list(itertools.product((0, 1), repeat=4))
    out = [tuple(int(v) for v in c) for c in combos]
    for c in out:
        if len(c) != 4 or any(v not in (0, 1) for v in c):
            raise ValueError(f"combination {c}: expected 4 values in {{0, 1}}")
    if not out:
        raise ValueError("combos is empty: expected at least one (c, r, b, d)")
    return out  # type: ignore[return-value]


def make_summary(
    datasets: Sequence[str] = ("digits",),
    seeds: Sequence[int] = (0, 1, 2),
    combos: str | Iterable[Sequence[int]] = "all",
    depths: Sequence[str] = ("input", "projection", "block1", "block2"),
    n_classes: int = 10,
    effect: Effect | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Build a synthetic gathered summary on the grid of DESIGN.md section 5.

    ``effect(dataset=, seed=, cluster=, route=, bias_route=, dense_fit=)`` returns either
    a float (added to ``reader_accuracy``) or a mapping ``{variable: shift}`` added to
    those scalar variables (``reader_accuracy`` shifts also carry into the interventions,
    per-class accuracy and token flow). Accuracies are clipped to [0, 1] only when an
    effect pushes them out, so keep planted effects inside the range for exact tests.
    """
    combo_list = _combo_list(combos)
    levels = {f: sorted({c[i] for c in combo_list}) for i, f in enumerate(FACTORS)}
    rng = np.random.default_rng(seed)
    grid_shape = (len(datasets), len(seeds), *(len(levels[f]) for f in FACTORS))
    nd, nz = len(depths), len(INTERVENTIONS)
    scalars = [
        k
        for k in _ATTRS
        if k not in ("tokenflow_consistency", "intervention_accuracy", "per_class_accuracy")
    ]
    data = {k: np.full(grid_shape, np.nan) for k in scalars}
    tokenflow = np.full((*grid_shape, nd), np.nan)
    interv = np.full((*grid_shape, nz), np.nan)
    per_class = np.full((*grid_shape, n_classes), np.nan)
    w = np.linspace(0.0, 1.0, nd) if nd > 1 else np.ones(1)
    chance = 1.0 / n_classes

    for (di, dname), (si, s), combo in itertools.product(
        enumerate(datasets), enumerate(seeds), combo_list
    ):
        idx = (di, si, *(levels[f].index(v) for f, v in zip(FACTORS, combo)))
        q = rng.normal()
        vals = {
            "reader_accuracy": 0.8 + 0.02 * q,
            "psnr": 30.0 + 2.0 * rng.normal(),
            "knn_consistency": 0.5 + 0.01 * q + 0.05 * rng.normal(),
            "knn_accuracy": 0.6 + 0.01 * q + 0.05 * rng.normal(),
            "ncm_accuracy": 0.55 + 0.05 * rng.normal(),
            "linear_probe_accuracy": 0.7 + 0.01 * q + 0.03 * rng.normal(),
            "silhouette": 0.05 + 0.02 * rng.normal(),
            "fisher_ratio": 0.3 + 0.05 * rng.normal(),
            "fresh_reader_accuracy": 0.7 + 0.015 * q + 0.02 * rng.normal(),
        }
        if effect is not None:
            shift = effect(dataset=dname, seed=s, **dict(zip(FACTORS, combo)))
            if not isinstance(shift, Mapping):
                shift = {"reader_accuracy": float(shift)}
            for k, v in shift.items():
                if k not in vals:
                    raise ValueError(f"effect returned unknown variable {k!r}")
                vals[k] += float(v)
        for k, v in vals.items():
            data[k][idx] = v if k in ("psnr", "silhouette", "fisher_ratio") else np.clip(v, 0, 1)
        acc = data["reader_accuracy"][idx]
        tokenflow[idx] = (
            0.3 + 0.5 * w * acc + (1 - w) * rng.uniform(0, 0.1, nd) + 1e-4 * rng.normal(size=nd)
        )
        drops = np.array([_DROP[z] for z in INTERVENTIONS])
        noise = 0.01 * rng.normal(size=nz)
        noise[0] = 0.0  # "none" is the trained reader's own accuracy
        interv[idx] = np.clip(acc - drops + noise, chance * 0.5, 1.0)
        per_class[idx] = np.clip(acc + 0.05 * rng.normal(size=n_classes), 0, 1)

    dims = ("dataset", "seed", *FACTORS)
    coords = {"dataset": list(datasets), "seed": [int(s) for s in seeds], **levels}
    ds = xr.Dataset(coords=coords)
    for k in scalars:
        ds[k] = (dims, data[k])
    ds["tokenflow_consistency"] = ((*dims, "depth"), tokenflow)
    ds["intervention_accuracy"] = ((*dims, "intervention"), interv)
    ds["per_class_accuracy"] = ((*dims, "class"), per_class)
    made = np.zeros(grid_shape, dtype=bool)
    for combo in combo_list:
        made[(slice(None), slice(None), *(levels[f].index(v) for f, v in zip(FACTORS, combo)))] = (
            True
        )
    ds["ran"] = (dims, made, {"long_name": "this combination was run (others are NaN by design)"})
    ds = ds.assign_coords(
        depth=list(depths), intervention=list(INTERVENTIONS), **{"class": np.arange(n_classes)}
    )
    for k, (long_name, units) in _ATTRS.items():
        ds[k].attrs.update(long_name=long_name, units=units)
    return ds
