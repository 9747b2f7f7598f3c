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

from inrroute.study import FACTOR_NAMES as FACTORS
from inrroute.study import INTERVENTIONS

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


def _combo_list(combos: str | Iterable[Sequence[int]]) -> list[tuple[int, ...]]:
    """Combinations as level tuples in FACTORS order (all of them for "all")."""
    n = len(FACTORS)
    if isinstance(combos, str):
        if combos != "all":
            raise ValueError(f"combos={combos!r}: expected 'all' or a list of level tuples")
        return list(itertools.product((0, 1), repeat=n))
    # A tuple naming the first factors only leaves the others at 0 (the baseline level).
    out = [tuple(int(v) for v in c) + (0,) * (n - len(c)) for c in combos]
    for c in out:
        if len(c) != n or any(v not in (0, 1) for v in c):
            raise ValueError(f"combination {c}: expected {n} values in {{0, 1}}")
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
    families: Sequence[str] | None = None,
    family_drop: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Build a synthetic gathered summary on the grid of DESIGN.md section 5.

    ``effect(dataset=, seed=, cluster=, route=, bias_route=, dense_fit=)`` returns either
    a float (added to ``reader_accuracy``) or a mapping ``{variable: shift}`` added to
    those scalar variables (``reader_accuracy`` shifts also carry into the interventions,
    per-class accuracy and token flow). Accuracies are clipped to [0, 1] only when an
    effect pushes them out, so keep planted effects inside the range for exact tests.

    ``families`` (fresh reader families, issue 15) gives ``fresh_reader_accuracy`` a
    ``reader_family`` dimension (the first family keeps the values it has without) and adds
    ``fresh_intervention_accuracy`` and ``fresh_tokenflow_consistency``; every family's
    bias interventions drop as the trained reader's do (run noise 0.005), plus
    ``family_drop[family]`` on bias_shuffle.
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
    if families:
        ds = _add_families(ds, list(families), dict(family_drop or {}), rng)
    for k, (long_name, units) in _ATTRS.items():
        ds[k].attrs.update(long_name=long_name, units=units)
    return ds


def _add_families(ds: xr.Dataset, families: list[str], extra: dict, rng) -> xr.Dataset:
    """Fresh reader families on a made summary (see make_summary)."""
    ref = ds["fresh_reader_accuracy"]
    accs = [ref] + [
        (ref + 0.02 * rng.normal(size=ref.shape) - 0.01 * i).clip(0, 1)
        for i in range(1, len(families))
    ]
    acc = xr.concat(accs, dim=xr.DataArray(families, dims="reader_family", name="reader_family"))
    acc = acc.where(ds["ran"]).transpose(*ref.dims, "reader_family")
    drops = xr.DataArray([_DROP[z] for z in INTERVENTIONS], dims="intervention",
                         coords={"intervention": list(INTERVENTIONS)})  # fmt: skip
    noise = xr.DataArray(0.005 * rng.normal(size=(*acc.shape, len(INTERVENTIONS))),
                         dims=(*acc.dims, "intervention"))  # fmt: skip
    noise[..., 0] = 0.0
    shift = xr.DataArray(
        [[extra.get(f, 0.0) if z == "bias_shuffle" else 0.0 for z in INTERVENTIONS]
         for f in families],
        dims=("reader_family", "intervention"),
    )  # fmt: skip
    interv = (acc - drops - shift + noise).clip(0, 1).transpose(*acc.dims, "intervention")
    flow = xr.concat([acc * w + 0.3 for w in (0.2, 0.6, 1.0)], dim="reader_depth").transpose(
        *acc.dims, "reader_depth"
    )
    ds = ds.drop_vars("fresh_reader_accuracy")
    ds["fresh_reader_accuracy"] = acc.assign_attrs(ref.attrs)
    ds["fresh_intervention_accuracy"] = interv.assign_attrs(units="1")
    ds["fresh_tokenflow_consistency"] = flow.assign_attrs(units="1")
    return ds


# --------------------------------------------------------------------------- simulated studies

SIM_DEPTHS = ("input", "projection", "block1", "block2")
SIM_FAMILIES = ("transformer", "mlp", "deepsets")
SIM_SCALARS = {  # variable -> base level
    "reader_accuracy": 0.95,
    "psnr": 25.0,
    "knn_consistency": 0.8,
    "knn_accuracy": 0.9,
    "ncm_accuracy": 0.85,
    "linear_probe_accuracy": 0.95,
    "silhouette": 0.2,
    "fisher_ratio": 1.0,
    "fresh_reader_accuracy": 0.94,
}


def _random_part(rng, shape, sd_seed, sd_factor_seed, sd_run):
    """Seed main effect + factor x seed shifts (every factor) + run noise on the grid
    (seed, cluster, route, bias_route, dense_fit): the seed is the independent unit."""
    n_seeds, ndim = shape[0], len(shape)
    per_seed = (n_seeds, *(1,) * (ndim - 1))
    out = sd_seed * rng.normal(size=per_seed) + sd_run * rng.normal(size=shape)
    for axis in range(1, ndim):
        sign = np.array([-1.0, 1.0]).reshape([2 if a == axis else 1 for a in range(ndim)])
        shift = sd_factor_seed * rng.normal(size=per_seed)
        out = out + 0.5 * sign * shift
    return out


def simulate_study(
    rng: np.random.Generator,
    n_seeds: int = 3,
    sd_seed: float = 0.01,
    sd_factor_seed: float = 0.01,
    sd_run: float = 0.005,
    planted: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """One simulated default-shaped study (summary.nc layout, one dataset ``digits``).

    Every variable gets independent seed-level random effects (seed main effect sd
    ``sd_seed``, a per-seed shift of every factor's effect sd ``sd_factor_seed``) and run
    noise ``sd_run``. Under ``planted=None`` nothing is related to anything: the null
    study of the calibration. ``planted`` adds effects, each on its own variables so they
    do not interfere:

    - ``cluster_knn``: cluster (on - off) raises knn_consistency by this much;
    - ``interaction_psnr``: cluster x route interaction on psnr (+-value / 2 per cell);
    - ``variant_probe``: the all-on combination raises linear_probe_accuracy;
    - ``shared_ncm``: run-level noise shared by ncm_accuracy and reader_accuracy with this
      sd (a within-cell correlation);
    - ``rise``: the block depths' consistency follows reader accuracy (slope), the
      exposed phi and the reader's input/projection do not;
    - ``bias_drop``: bias_zero and bias_shuffle drop accuracy by this much (the col_*
      controls by nothing), only where bias_route = 1;
    - ``reader_gap``: the trained reader beats the fresh one by this much;
    - ``family_drop``: the fresh ``mlp`` reader's bias_shuffle drop exceeds the other
      families' by this much;
    - ``family_interaction``: the fresh ``deepsets`` reader's bias_shuffle drop rises by
      this much where bias_route = 1 (a bias_route x reader_family interaction).

    Fresh reader families (SIM_FAMILIES): ``fresh_reader_accuracy`` and
    ``fresh_intervention_accuracy`` get a ``reader_family`` dimension; the first family's
    accuracy is the scalar fresh reader's, the others' are independent draws of the same
    random structure (a family x seed and family x factor x seed random effect each).
    """
    planted = dict(planted or {})
    shape = (n_seeds, *(2,) * len(FACTORS))
    grid = np.meshgrid(*(np.arange(2),) * len(FACTORS), indexing="ij")
    level = {f: g[None].astype(float) for f, g in zip(FACTORS, grid, strict=True)}
    c, r, b = level["cluster"], level["route"], level["bias_route"]
    all_on = np.prod(list(level.values()), axis=0)

    def noise(scale=1.0):
        return scale * _random_part(rng, shape, sd_seed, sd_factor_seed, sd_run)

    vals = {k: base + noise() for k, base in SIM_SCALARS.items()}
    vals["psnr"] = SIM_SCALARS["psnr"] + noise(50.0)  # dB: a larger scale
    vals["knn_consistency"] = vals["knn_consistency"] + planted.get("cluster_knn", 0.0) * c
    vals["psnr"] = vals["psnr"] + planted.get("interaction_psnr", 0.0) * (c - 0.5) * (r - 0.5) * 2
    vals["linear_probe_accuracy"] = (
        vals["linear_probe_accuracy"] + planted.get("variant_probe", 0.0) * all_on
    )
    shared = planted.get("shared_ncm", 0.0) * rng.normal(size=shape)
    vals["reader_accuracy"] = vals["reader_accuracy"] + shared
    vals["ncm_accuracy"] = vals["ncm_accuracy"] + shared
    vals["fresh_reader_accuracy"] = (
        vals["fresh_reader_accuracy"] - SIM_SCALARS["fresh_reader_accuracy"]
        + vals["reader_accuracy"] - planted.get("reader_gap", 0.0)
    )  # fmt: skip
    acc = vals["reader_accuracy"]
    tokenflow = np.stack([0.8 + noise() for _ in SIM_DEPTHS], axis=-1)
    slope = planted.get("rise", 0.0)
    for i, depth in enumerate(SIM_DEPTHS):
        if depth.startswith("block"):
            tokenflow[..., i] += slope * (acc - SIM_SCALARS["reader_accuracy"])
    drops = {z: noise(0.5) for z in INTERVENTIONS if z != "none"}  # null: no drop at all
    for z in ("bias_zero", "bias_shuffle"):
        drops[z] = drops[z] + planted.get("bias_drop", 0.0) * b
    interv = np.stack([acc if z == "none" else acc - drops[z] for z in INTERVENTIONS], axis=-1)
    fresh = [vals.pop("fresh_reader_accuracy")]
    fresh += [SIM_SCALARS["fresh_reader_accuracy"] + noise() for _ in SIM_FAMILIES[1:]]
    fresh_interv = []
    for family, f_acc in zip(SIM_FAMILIES, fresh, strict=True):
        f_drops = {z: noise(0.5) for z in INTERVENTIONS if z != "none"}
        if family == "mlp":
            f_drops["bias_shuffle"] = f_drops["bias_shuffle"] + planted.get("family_drop", 0.0)
        if family == "deepsets":
            f_drops["bias_shuffle"] = (
                f_drops["bias_shuffle"] + planted.get("family_interaction", 0.0) * b
            )
        fresh_interv.append(
            np.stack([f_acc if z == "none" else f_acc - f_drops[z] for z in INTERVENTIONS], -1)
        )
    dims = ("dataset", "seed", *FACTORS)
    coords = {"dataset": ["digits"], "seed": np.arange(n_seeds), **{f: [0, 1] for f in FACTORS}}
    ds = xr.Dataset({k: (dims, v[None]) for k, v in vals.items()}, coords=coords)
    ds["tokenflow_consistency"] = ((*dims, "depth"), tokenflow[None])
    ds["intervention_accuracy"] = ((*dims, "intervention"), interv[None])
    ds["fresh_reader_accuracy"] = ((*dims, "reader_family"), np.stack(fresh, -1)[None])
    ds["fresh_intervention_accuracy"] = (
        (*dims, "reader_family", "intervention"),
        np.stack(fresh_interv, -2)[None],
    )
    ds = ds.assign_coords(reader_family=list(SIM_FAMILIES))
    ds["ran"] = (dims, np.ones((1, *shape), dtype=bool))
    return ds.assign_coords(depth=list(SIM_DEPTHS), intervention=list(INTERVENTIONS))


# --------------------------------------------------------------------------- calibration

# Planted effects of the power study (each on its own variables; see simulate_study).
PLANTED = {
    "cluster_knn": 0.05,
    "interaction_psnr": 1.0,
    "variant_probe": 0.1,
    "shared_ncm": 0.02,
    "rise": 8.0,
    "bias_drop": 0.05,
    "reader_gap": 0.04,
    "family_drop": 0.05,
    "family_interaction": 0.06,
}


def _p(table, **match) -> np.ndarray:
    keep = np.ones(len(table), dtype=bool)
    for col, value in match.items():
        keep &= table[col].astype(str).to_numpy() == str(value)
    return table.loc[keep, "p"].to_numpy(float)


def family_pvalues(tables) -> dict[str, tuple[np.ndarray, str]]:
    """Per reported test family, the p-values of one simulated study that the null
    calibration counts, and (as the second element) the planted effect that the power
    study uses for that family's test of interest, with the p-values that test it."""
    anova, corr = tables["anova"], tables["geometry_correlation"]
    terms = anova[anova["term"].str.contains("C\\(cluster\\)|C\\(route\\)|C\\(bias|C\\(dense")]
    drops, verdicts = tables["intervention_drops"], tables["verdicts"]
    family_terms = anova[
        anova["response"].str.startswith("fresh_")
        & anova["term"].str.contains("C(reader_family)", regex=False)
    ]
    return {
        # family: (null p-values, power p-values)
        "anova: every factorial term (reader_accuracy)": (
            _p(terms, response="reader_accuracy"),
            _p(anova, response="psnr", term="C(cluster):C(route)"),
        ),
        "anova: cluster term (reader_accuracy)": (
            _p(anova, response="reader_accuracy", term="C(cluster)"),
            _p(anova, response="knn_consistency", term="C(cluster)"),
        ),
        "cluster_effect": (
            _p(tables["cluster_effect"], response="reader_accuracy"),
            _p(tables["cluster_effect"], response="knn_consistency"),
        ),
        "variants_vs_baseline": (
            _p(tables["variants_vs_baseline"], response="reader_accuracy"),
            _p(
                tables["variants_vs_baseline"],
                response="linear_probe_accuracy",
                combination="cluster1_route1_biasroute1_densefit1",
            ),
        ),
        "geometry_correlation pooled": (
            _p(corr, metric="knn_consistency", kind="pooled"),
            _p(corr, metric="ncm_accuracy", kind="pooled"),
        ),
        "geometry_correlation within_cells": (
            _p(corr, metric="knn_consistency", kind="within_cells"),
            _p(corr, metric="ncm_accuracy", kind="within_cells"),
        ),
        "tokenflow_curve (per depth)": (
            tables["tokenflow_curve"]["p"].to_numpy(float),
            _p(tables["tokenflow_curve"], depth="block2"),
        ),
        "intervention_drops: bias_shuffle drop": (
            _p(drops, intervention="bias_shuffle", bias_route="1"),
            _p(drops, intervention="bias_shuffle", bias_route="1"),
        ),
        "intervention_drops: bias_shuffle - col_shuffle": (
            _p(drops, intervention="bias_shuffle - col_shuffle", bias_route="1"),
            _p(drops, intervention="bias_shuffle - col_shuffle", bias_route="1"),
        ),
        "verdicts: rise over phi (routed)": (
            _p(verdicts, criterion="rise_over_phi"),
            _p(verdicts, criterion="rise_over_phi"),
        ),
        "verdicts: trained - fresh reader": (
            _p(verdicts, criterion="trained_beats_fresh"),
            _p(verdicts, criterion="trained_beats_fresh"),
        ),
        "anova: reader_family terms (fresh readers)": (
            family_terms["p"].to_numpy(float),
            _p(anova, response="fresh_drop_bias_shuffle", term="C(bias_route):C(reader_family)"),
        ),
        "verdicts: drop gap between families": (
            verdicts.loc[verdicts["criterion"].str.startswith("drop_gap"), "p"].to_numpy(float),
            _p(verdicts, criterion="drop_gap transformer - mlp"),
        ),
        "verdicts: factor x family interaction": (
            _p(verdicts, criterion="factor_x_family_interaction"),
            _p(verdicts, criterion="factor_x_family_interaction"),
        ),
    }


def calibrate(
    n_studies: int, planted: Mapping[str, float] | None, seed: int = 0, alpha: float = 0.05
) -> dict[str, float]:
    """Rejection rate at ``alpha`` of every test family over simulated studies fed to
    ``inrroute.stats.compute_all`` in-process (no bootstrap: the p-values are seed-level
    tests), plus the rate of 'yes' verdicts per question. Null (``planted=None``): the
    false-positive rate over all of a family's tests; planted: the power of its test of
    interest."""
    from inrroute import stats

    rng = np.random.default_rng(seed)
    hits: dict[str, list[float]] = {}
    for _ in range(n_studies):
        tables = stats.compute_all(simulate_study(rng, planted=planted), n_boot=0)
        for family, (null_p, power_p) in family_pvalues(tables).items():
            p = null_p if planted is None else power_p
            hits.setdefault(family, []).extend((p[np.isfinite(p)] < alpha).astype(float))
        verdicts = tables["verdicts"]
        for _, r in verdicts[verdicts["criterion"] == "verdict"].iterrows():
            key = f"verdict yes: {r['question']} ({r['scope']})"
            hits.setdefault(key, []).append(float(r["outcome"] == "yes"))
    return {k: float(np.mean(v)) for k, v in hits.items()}
