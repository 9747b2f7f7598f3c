"""Statistics over the gathered summary (DESIGN.md section 5): the study's numbers.

Input is the ``results/summary.nc`` Dataset; :func:`run_stats` returns one tidy pandas
table per name in ``study.STATS_TABLES`` (ANOVA, cluster effect, geometry correlations,
token-flow curve, variants versus the baseline, intervention drops, verdicts), which
``write_tables`` stores as CSV and netCDF. findings.py and figures.py only present them.

The independent unit is the seed: runs of one seed share the SIREN init, the reader init
and the batch order, so every test here is a test across seeds.

- **ANOVA: seed is a random block, and factor x seed is random too.** A fixed block
  ``C(seed)`` with the pooled residual is right only when the factors' effects are the
  same in every seed; it then tests each term against the mean of all term x seed
  interactions. Training seeds do change how much clustering or routing helps (the
  calibration's null studies plant exactly such seed-level factor shifts), and the
  question is about the population of seeds, so that pooled test is anti-conservative
  for a factor whose effect varies by seed. The model used is therefore the mixed model
  with seed and every term x seed random. In a balanced grid (every seed has the same
  runs, the planned design) its REML F test of a term is exactly the classical
  error-stratum test: the term's mean square over the term x seed mean square, on
  (1, n_seeds - 1) df (across datasets: the pooled within-dataset term x seed stratum,
  D (S - 1) df, and ``dataset x term`` rows for the non-additivity across datasets).
  It is computed in closed form from the per-seed contrasts (the tests check it against
  ``anova_lm`` on the saturated OLS model). statsmodels ``MixedLM`` is used where that
  closed form does not exist, a grid with missing runs: a random seed intercept, Wald
  tests per term, flagged in the ``method`` column (it assumes no factor x seed spread).
  Sums of squares are the partial (Type III-like, orthogonal in the planned design) sums
  of squares of the +-1 contrasts; partial eta^2 = SS / (SS + SS of its error stratum).
- **Paired effects** (cluster on minus off; each variant minus the baseline; intervention
  drops; trained minus fresh reader) are averaged within seed first, then tested across
  seeds with a one-sample t (n = number of seeds).
- **Correlations** (geometry vs accuracy, the token-flow curve): the point estimate is
  Spearman's rho over all runs; its interval comes from a bootstrap that resamples seeds
  (cluster bootstrap; with S seeds it has at most C(2S-1, S) distinct resamples, 10 for
  3 seeds, so it is descriptive); the curve also gets a joint band over depths (max-t
  over depths of the same resamples). The p-value is a seed-level test: Spearman's rho
  within each seed, t-tested across seeds. Geometry correlations are reported pooled
  and "within cells": on the residuals after the factors' main effects, fitted within
  each seed, so a metric that merely follows the cluster factor does not count.
- **Reader families** (issue 15): fresh readers of several families (``reader_family``
  dimension of the summary) are analysed in their own frame (:func:`family_frame`, one
  row per run and family). Their ANOVA (:func:`family_anova`, rows of the ``anova``
  table with responses ``fresh_*``) takes reader_family as a within-run factor beside
  the study factors, seed and every term x seed random (:func:`within_anova`: the
  univariate repeated-measures F, sphericity assumed for the family contrasts; equal to
  statsmodels ``AnovaRM``); the study factor x reader_family interactions are the test
  of reader dependence. ``reader_families`` describes accuracy, drops and token flow per
  family, with the trained reader beside them. Everything single-family (the
  trained-versus-fresh comparison, correlations) reads the ``transformer`` family.
- **Multiplicity**: ``p_holm`` is Holm within a table (within one response and scope for
  the ANOVA), ``p_bh`` is Benjamini-Hochberg over every test the study reports.
- **Verdicts** follow the pre-stated rules of config section ``verdicts`` (see
  :func:`verdict_table`); every criterion states its estimate, interval, threshold,
  p, and the minimum detectable effect of these seeds at the configured power.

Every function tolerates a partial grid (a smoke run with one seed, one cluster level, or
only a few combinations): single-level factors and aliased terms are dropped and named in
``note``; tests without seed-level degrees of freedom report NaN instead of failing.
The calibration of every test family (size and power under simulated studies with
seed-level random effects) is in tests/test_calibration.py and BENCHMARKS.md.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
import xarray as xr
from scipy import stats as sps

from .config import StudyConfig, VerdictConfig
from .io import write_csv, write_netcdf
from .study import (
    BASELINE,
    FACTOR_NAMES,
    FRESH_REFERENCE_FAMILY,
    GEOMETRY_METRICS,
    GRID_DIMS,
    INTERVENTIONS_BIAS,
    INTERVENTIONS_CONTROL,
    POOLED,
    READER_FAMILIES,
    STATS_TABLES,
    combination_name,
)

FACTORS = FACTOR_NAMES
ANOVA_RESPONSES = ("reader_accuracy", "knn_consistency", "linear_probe_accuracy", "psnr")
CORRELATION_METRICS = (*GEOMETRY_METRICS, "fresh_reader_accuracy")
CLUSTER_RESPONSES = ("knn_consistency", "reader_accuracy", "linear_probe_accuracy")
VARIANT_RESPONSES = (
    "reader_accuracy",
    "knn_consistency",
    "linear_probe_accuracy",
    "fresh_reader_accuracy",
    "drop_bias_shuffle",
)
# Paired contrasts between interventions (first minus second), reported beside the drops:
# shuffle vs its column control (separation), zero vs shuffle (the equivalence of the
# bias rule), mean vs shuffle (sample information versus a shift of the marginal).
DROP_CONTRASTS = (
    ("bias_shuffle", "col_shuffle"),
    ("bias_zero", "bias_shuffle"),
    ("bias_mean", "bias_shuffle"),
)
TOKENFLOW_PREFIX = "tokenflow__"
PHI_DEPTH = "phi"  # the exposed phi's kNN consistency (geometry.nc) as the curve's input
CI_LEVEL = 0.95

ANOVA_COLUMNS = [
    "response", "scope", "term", "sum_sq", "df", "error_sum_sq", "df_error", "F", "p",
    "partial_eta_sq", "p_holm", "p_bh", "non_additivity", "method", "note",
]  # fmt: skip
SEED_TEST_COLUMNS = ["estimate", "ci_low", "ci_high", "t", "df", "p", "n_seeds", "sd_seed", "mde"]
CLUSTER_COLUMNS = ["dataset", "response", *SEED_TEST_COLUMNS, "p_holm", "p_bh"]
VARIANT_COLUMNS = ["dataset", "combination", "response", *SEED_TEST_COLUMNS, "p_holm", "p_bh"]
CORR_COLUMNS = [
    "dataset", "metric", "kind", "spearman_rho", "ci_low", "ci_high", "rho_seed_mean",
    "t", "df", "p", "n_runs", "n_seeds", "p_holm", "p_bh",
]  # fmt: skip
TOKENFLOW_COLUMNS = [
    "dataset", "depth", "depth_index", "stage", "spearman_rho", "ci_low", "ci_high",
    "band_low", "band_high", "rho_seed_mean", "t", "df", "p", "n_runs", "n_seeds",
    "p_holm", "p_bh",
]  # fmt: skip
DROP_COLUMNS = [
    "dataset", "bias_route", "intervention", "kind", *SEED_TEST_COLUMNS,
    "ci90_low", "ci90_high", "n_runs", "p_holm", "p_bh",
]  # fmt: skip
VERDICT_COLUMNS = [
    "dataset", "question", "scope", "criterion", "statistic", "estimate", "ci_low",
    "ci_high", "ci90_low", "ci90_high", "threshold", "p", "p_holm", "mde", "n_seeds",
    "outcome", "rule",
]  # fmt: skip
INTERACTION_COLUMNS = [
    "dataset", "response", "factor_a", "level_a", "factor_b", "level_b",
    "estimate", "ci_low", "ci_high", "n_seeds",
]  # fmt: skip
INTERACTION_RESPONSES = ("reader_accuracy", "knn_consistency")
FAMILY = "reader_family"
TRAINED = "trained"  # the trained reader's row in the reader_families table
FAMILY_RESPONSES = ("accuracy", "drop_bias_shuffle")  # family ANOVA responses (fresh_*)
FAMILY_ROUTE = "drop_bias_shuffle"  # the drop the routing reader-dependence verdict reads
FAMILY_COLUMNS = [
    "dataset", "reader_family", "response", "kind", *SEED_TEST_COLUMNS,
    "ci90_low", "ci90_high", "n_runs", "p_holm", "p_bh",
]  # fmt: skip
COLUMNS = {
    "reader_families": FAMILY_COLUMNS,
    "interaction_means": INTERACTION_COLUMNS,
    "anova": ANOVA_COLUMNS,
    "cluster_effect": CLUSTER_COLUMNS,
    "geometry_correlation": CORR_COLUMNS,
    "tokenflow_curve": TOKENFLOW_COLUMNS,
    "variants_vs_baseline": VARIANT_COLUMNS,
    "intervention_drops": DROP_COLUMNS,
    "verdicts": VERDICT_COLUMNS,
}


# --------------------------------------------------------------------------- frame


def _check_summary(ds: xr.Dataset) -> None:
    missing = [d for d in GRID_DIMS if d not in ds.dims]
    if missing:
        raise ValueError(
            f"summary lacks dimensions {missing}: expected {list(GRID_DIMS)} (DESIGN.md 5)"
        )
    for f in FACTORS:
        bad = set(np.asarray(ds[f].values).tolist()) - {0, 1}
        if bad:
            raise ValueError(f"factor {f} has levels {sorted(bad)}: expected a subset of {{0, 1}}")


def _run_mask(ds: xr.Dataset) -> xr.DataArray:
    """Boolean grid of the cells that are runs: ``ran`` if gathered, else any finite value."""
    if "ran" in ds.data_vars:
        return ds["ran"].astype(bool)
    finite = [
        np.isfinite(ds[v]).any([d for d in ds[v].dims if d not in GRID_DIMS])
        for v in ds.data_vars
        if set(GRID_DIMS) <= set(ds[v].dims) and np.issubdtype(ds[v].dtype, np.floating)
    ]
    if not finite:
        raise ValueError(f"summary has no float variable over {list(GRID_DIMS)}")
    return xr.concat(finite, dim="_var").any("_var")


def summary_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    """One row per run that exists: grid keys, ``combination``, responses, ``drop_*``,
    and ``tokenflow__<depth>``.

    A grid cell is a run where the summary's boolean ``ran`` says so (when present),
    otherwise where at least one scalar response is finite. Responses are the numeric,
    non-boolean variables over exactly the grid dimensions; ``drop_<z>`` is
    ``intervention_accuracy[none] - intervention_accuracy[z]``.
    """
    _check_summary(ds)
    scalar = [
        v
        for v in ds.data_vars
        if set(ds[v].dims) == set(GRID_DIMS)
        and np.issubdtype(ds[v].dtype, np.number)
        and ds[v].dtype != bool
    ]
    cols: dict[str, pd.Series] = {v: ds[v].transpose(*GRID_DIMS).to_series() for v in scalar}
    # Per-family variables (fresh readers, issue 15) enter as the reference family's values
    # (the fresh transformer), under their own name: the columns they always were.
    for v in ds.data_vars:
        if (
            set(ds[v].dims) == {*GRID_DIMS, FAMILY}
            and FRESH_REFERENCE_FAMILY in [str(f) for f in ds[FAMILY].values]
            and v not in cols
        ):
            ref = ds[v].assign_coords({FAMILY: [str(f) for f in ds[FAMILY].values]})
            cols[v] = (
                ref.sel({FAMILY: FRESH_REFERENCE_FAMILY}, drop=True)
                .transpose(*GRID_DIMS)
                .to_series()
            )
    if "intervention_accuracy" in ds.data_vars:
        ia = ds["intervention_accuracy"].transpose(*GRID_DIMS, "intervention")
        levels = [str(z) for z in ia["intervention"].values]
        if "none" not in levels:
            raise ValueError(
                f"intervention levels {levels}: expected 'none' among them to compute drops"
            )
        ia = ia.assign_coords(intervention=levels)
        base = ia.sel(intervention="none")
        for z in levels:
            if z != "none":
                cols[f"drop_{z}"] = (base - ia.sel(intervention=z)).to_series()
    if "tokenflow_consistency" in ds.data_vars:
        tf = ds["tokenflow_consistency"].transpose(*GRID_DIMS, "depth")
        for d in tf["depth"].values:
            cols[f"{TOKENFLOW_PREFIX}{d}"] = tf.sel(depth=d).drop_vars("depth").to_series()
    if not cols:
        raise ValueError(f"summary has no variable over {list(GRID_DIMS)}: nothing to analyse")
    df = pd.DataFrame(cols)
    responses = list(df.columns)
    df = df[_run_mask(ds).transpose(*GRID_DIMS).to_series().reindex(df.index)].reset_index()
    _typed_keys(df)
    return df[[*GRID_DIMS, "combination", *responses]].reset_index(drop=True)


def _typed_keys(df: pd.DataFrame) -> None:
    """In place: the grid keys as plain types and each run's combination name."""
    df["dataset"] = df["dataset"].astype(str)
    for key in ("seed", *FACTORS):
        df[key] = df[key].astype(int)
    df["combination"] = [
        combination_name(**dict(zip(FACTORS, row)))
        for row in df[list(FACTORS)].itertuples(index=False)
    ]


def tokenflow_depths(df: pd.DataFrame) -> list[str]:
    """The reader depths of the frame's token-flow columns, in summary order."""
    return [c[len(TOKENFLOW_PREFIX) :] for c in df.columns if c.startswith(TOKENFLOW_PREFIX)]


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)) if rows else _empty(columns)


# --------------------------------------------------------------------------- seed-level t


def seed_test(
    values: Iterable[float], alpha: float = 1 - CI_LEVEL, power: float = 0.8
) -> dict[str, float]:
    """One-sample t across seeds of per-seed values (their mean is the estimate).

    Returns the estimate, its (1 - alpha) interval, the (1 - 2 alpha) interval used by
    equivalence rules, t, df, two-sided p, the number of seeds, the seed-level sd, and
    ``mde``: the smallest true effect this many seeds detect with ``power`` at ``alpha``
    given the observed sd (NaN where undefined: n < 2).
    """
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    out = dict.fromkeys(
        ("estimate", "ci_low", "ci_high", "ci90_low", "ci90_high", "t", "p", "sd_seed", "mde"),
        np.nan,
    )
    out.update(n_seeds=n, df=float(max(n - 1, 0)))
    if n == 0:
        return out
    mean = float(v.mean())
    out["estimate"] = mean
    if n < 2:
        return out
    sd = float(v.std(ddof=1))
    se = sd / np.sqrt(n)
    df = n - 1
    t_crit = float(sps.t.ppf(1 - alpha / 2, df))
    t_eq = float(sps.t.ppf(1 - alpha, df))
    out.update(sd_seed=sd, mde=(t_crit + float(sps.t.ppf(power, df))) * se)
    if se <= 1e-12 * max(1.0, abs(mean)):
        # Identical per-seed values: the interval collapses; t is infinite unless mean is 0.
        out.update(ci_low=mean, ci_high=mean, ci90_low=mean, ci90_high=mean)
        if mean != 0.0:
            out.update(t=float(np.copysign(np.inf, mean)), p=0.0)
        return out
    t = mean / se
    out.update(
        ci_low=mean - t_crit * se,
        ci_high=mean + t_crit * se,
        ci90_low=mean - t_eq * se,
        ci90_high=mean + t_eq * se,
        t=t,
        p=float(2 * sps.t.sf(abs(t), df)),
    )
    return out


def _seed_row(values: Iterable[float], columns: Sequence[str] = SEED_TEST_COLUMNS) -> dict:
    res = seed_test(values)
    return {k: res[k] for k in columns}


def holm(p: Iterable[float]) -> np.ndarray:
    """Holm adjusted p-values over the finite entries; NaN entries stay NaN."""
    return _adjust(p, "holm")


def _adjust(p: Iterable[float], method: str) -> np.ndarray:
    """Holm (``holm``) or Benjamini-Hochberg (``fdr_bh``) adjusted p over finite entries.

    The same values as ``statsmodels.stats.multitest.multipletests`` (the tests check
    it), computed directly because that function runs a full ``gc.collect()`` on every
    call (~50 ms), which dominated the stats stage and the calibration.
    """
    p = np.asarray(list(p), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if not m:
        return out
    order = np.argsort(p[ok], kind="stable")
    sorted_p = p[ok][order]
    if method == "holm":  # k-th smallest times (m - k + 1), made monotone upwards
        adj = np.maximum.accumulate(sorted_p * (m - np.arange(m)))
    elif method == "fdr_bh":  # k-th smallest times m / k, made monotone downwards
        adj = np.minimum.accumulate((sorted_p * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"method={method!r}: expected 'holm' or 'fdr_bh'")
    out[ok[order]] = np.minimum(adj, 1.0)
    return out


# --------------------------------------------------------------------------- ANOVA


def _term_name(factors: Sequence[str]) -> str:
    return ":".join(f"C({f})" for f in factors)


def _contrast_design(
    cells: pd.DataFrame, factors: Sequence[str]
) -> tuple[list[str], np.ndarray, list[str]]:
    """+-1 contrast columns of the hierarchical full factorial on the present cells.

    Returns the estimable term names, the design (intercept first, one column per term)
    and the aliased terms: a term whose column adds no rank to the terms before it (a
    smoke run with two combinations cannot separate ``route`` from ``dense_fit``).
    """
    signs = {f: 2.0 * cells[f].to_numpy(float) - 1.0 for f in factors}
    cols, names, aliased = [np.ones(len(cells))], [], []
    rank = 1
    for order in range(1, len(factors) + 1):
        for combo in itertools.combinations(factors, order):
            x = np.prod([signs[f] for f in combo], axis=0)
            trial = np.column_stack([*cols, x])
            new = int(np.linalg.matrix_rank(trial))
            if new > rank:
                cols.append(x)
                names.append(_term_name(combo))
                rank = new
            else:
                aliased.append(_term_name(combo))
    return names, np.column_stack(cols), aliased


def _unit_matrix(
    data: pd.DataFrame, factors: Sequence[str]
) -> tuple[pd.DataFrame, np.ndarray, list] | None:
    """Cells (rows of factor levels) and the unit x cell response matrix, or None when the
    grid is unbalanced (a unit lacks a cell, or has one twice)."""
    wide = data.pivot_table(index="_unit", columns=list(factors), values="_y", aggfunc="count")
    if (wide.fillna(0) != 1).to_numpy().any():
        return None
    y = data.pivot_table(index="_unit", columns=list(factors), values="_y", aggfunc="mean")
    cells = y.columns.to_frame(index=False)
    if not factors:
        cells = pd.DataFrame(index=range(y.shape[1]))
    return cells, y.to_numpy(float), list(y.index)


def _stratum_rows(
    beta: np.ndarray, weight: np.ndarray, names: list[str], groups: np.ndarray
) -> list[dict]:
    """Error-stratum F tests of every term (and its dataset interaction) from per-unit
    coefficients ``beta`` (terms x units), ``weight`` = 1 / diag((X'X)^-1)."""
    rows = []
    labels = np.unique(groups)
    n_d = labels.size
    means = np.stack([beta[:, groups == g].mean(axis=1) for g in labels], axis=1)
    sizes = np.array([(groups == g).sum() for g in labels])
    dev = beta - means[:, np.searchsorted(labels, groups)]
    df_err = float(np.sum(sizes - 1))
    for j, term in enumerate(names):
        err = float(weight[j] * np.sum(dev[j] ** 2))
        grand = float(np.sum(sizes * means[j]) / sizes.sum())
        ss = float(weight[j] * sizes.sum() * grand**2)
        rows.append(_f_row(term, ss, 1.0, err, df_err))
        if n_d > 1:
            ss_d = float(weight[j] * np.sum(sizes * (means[j] - grand) ** 2))
            rows.append(_f_row(f"C(dataset):{term}", ss_d, float(n_d - 1), err, df_err))
    return rows


def _f_row(term: str, ss: float, df: float, err: float, df_err: float) -> dict:
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.float64(ss / df) / np.float64(err / df_err) if df_err > 0 else np.nan
        p = float(sps.f.sf(f, df, df_err)) if np.isfinite(f) else (0.0 if f == np.inf else np.nan)
        eta = ss / (ss + err) if df_err > 0 and ss + err > 0 else np.nan
    return {"term": term, "sum_sq": ss, "df": df, "error_sum_sq": err, "df_error": df_err,
            "F": f, "p": p, "partial_eta_sq": eta}  # fmt: skip


def _stratified_anova(data: pd.DataFrame, varying: list[str]) -> tuple[list[dict], list[str]]:
    """The balanced mixed-model ANOVA (seed and term x seed random); None if unbalanced."""
    mat = _unit_matrix(data, varying)
    if mat is None:
        return [], []
    cells, y, units = mat
    names, x, aliased = _contrast_design(cells, varying)
    beta, *_ = np.linalg.lstsq(x, y.T, rcond=None)  # (1 + terms) x units
    weight = 1.0 / np.diag(np.linalg.inv(x.T @ x))
    unit_group = dict(zip(data["_unit"], data["_group"]))
    groups = np.array([unit_group[u] for u in units])
    rows = []
    # Block rows: between datasets (tested against seeds within dataset) and the seed
    # block itself (random: its variance is not tested).
    labels, inv = np.unique(groups, return_inverse=True)
    intercept = beta[0]
    grp_mean = np.array([intercept[inv == i].mean() for i in range(labels.size)])
    seed_ss = float(weight[0] * np.sum((intercept - grp_mean[inv]) ** 2))
    seed_df = float(len(units) - labels.size)
    if labels.size > 1:
        sizes = np.bincount(inv)
        ss_d = float(
            weight[0] * np.sum(sizes * (grp_mean - np.average(grp_mean, weights=sizes)) ** 2)
        )
        rows.append(_f_row("C(dataset)", ss_d, float(labels.size - 1), seed_ss, seed_df))
    block = "C(dataset):C(seed)" if labels.size > 1 else "C(seed)"
    rows.append({"term": block, "sum_sq": seed_ss, "df": seed_df, "error_sum_sq": np.nan,
                 "df_error": np.nan, "F": np.nan, "p": np.nan, "partial_eta_sq": np.nan})  # fmt: skip
    rows += _stratum_rows(beta[1:], weight[1:], names, groups)
    return rows, aliased


def _mixedlm_anova(data: pd.DataFrame, varying: list[str]) -> tuple[list[dict], list[str]]:
    """Unbalanced grid: MixedLM with a random intercept per seed, Wald test per term."""
    cells = data[varying].drop_duplicates().reset_index(drop=True)
    names, _, aliased = _contrast_design(cells, varying)
    terms = ([f"C(dataset) * ({' + '.join(names)})"] if data["_group"].nunique() > 1
             else names) if names else []  # fmt: skip
    if not terms:
        return [], aliased
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("_y ~ " + " + ".join(terms), data, groups=data["_unit"]).fit(reml=True)
        wald = fit.wald_test_terms(scalar=True).table
    rows = []
    for term, r in wald.iterrows():
        if term == "Intercept":
            continue
        df = float(r["df_constraint"])
        rows.append({"term": term, "sum_sq": np.nan, "df": df, "error_sum_sq": np.nan,
                     "df_error": np.nan, "F": float(r["statistic"]) / df,
                     "p": float(r["pvalue"]), "partial_eta_sq": np.nan})  # fmt: skip
    return rows, aliased


def anova_table(
    df: pd.DataFrame,
    response: str,
    factors: Sequence[str] = FACTORS,
    scope: str | None = None,
) -> pd.DataFrame:
    """Mixed-model ANOVA of the full factorial over ``factors`` with seed as random block.

    One dataset: each term against its term x seed stratum. Several datasets: seeds are
    nested in datasets, every term gets a ``C(dataset):term`` row (non-additivity across
    datasets, DESIGN 5), both tested against the pooled within-dataset term x seed
    stratum. ``scope`` labels the table (default: the dataset's name, or "pooled").
    """
    if response not in df.columns:
        raise ValueError(f"response {response!r} is not a column: expected one of {list(df)}")
    missing = [f for f in factors if f not in df.columns]
    if missing:
        raise ValueError(f"factors {missing} are not columns of the frame")
    data = df[np.isfinite(df[response].astype(float))].copy()
    names = sorted(data["dataset"].unique())
    if scope is None:
        scope = "pooled" if len(names) > 1 else (names[0] if names else "all")
    if data.empty:
        return _empty(ANOVA_COLUMNS)
    data["_y"] = data[response].astype(float)
    data["_group"] = data["dataset"].astype(str)
    data["_unit"] = data["_group"] + "/" + data["seed"].astype(str)
    notes = []
    varying = [f for f in factors if data[f].nunique() > 1]
    single = [f for f in factors if f not in varying]
    if single:
        notes.append(f"single-level factors dropped: {', '.join(single)}")
    method = "error-stratum F (seed and term x seed random)"
    rows, aliased = _stratified_anova(data, varying)
    if not rows:
        method = "MixedLM random seed intercept, Wald (unbalanced grid)"
        notes.append("unbalanced grid: a random seed intercept only, no term x seed stratum")
        rows, aliased = _mixedlm_anova(data, varying)
    if aliased:
        notes.append(f"aliased terms dropped (missing cells): {', '.join(aliased)}")
    out = pd.DataFrame(rows)
    if out.empty:
        return _empty(ANOVA_COLUMNS)
    if data["_unit"].nunique() - data["_group"].nunique() < 1:
        notes.append("one seed per dataset: no seed-level error, nothing can be tested")
    y = data["_y"].to_numpy(float)
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
        # Round-off of a constant response would otherwise give "significant" 1e-30 / 1e-31.
        notes.append("response is constant across runs: nothing to test")
        out[["F", "p", "partial_eta_sq"]] = np.nan
    is_term = out["term"].str.contains(r"C\((?:" + "|".join(FACTORS) + r")\)", regex=True)
    out["p_holm"] = holm(np.where(is_term, out["p"], np.nan))
    out["p_bh"] = np.nan
    out["non_additivity"] = out["term"].str.contains(":", regex=False) & is_term
    out["response"], out["scope"], out["method"] = response, scope, method
    out["note"] = "; ".join(notes)
    return out[ANOVA_COLUMNS]


def anova_all(df: pd.DataFrame) -> pd.DataFrame:
    """ANOVA tables for the section-5 responses and every ``drop_*``: per dataset and,
    with several datasets, pooled with dataset x factor terms."""
    responses = [r for r in ANOVA_RESPONSES if r in df.columns]
    responses += sorted(c for c in df.columns if c.startswith("drop_"))
    datasets = sorted(df["dataset"].unique())
    tables = []
    for response in responses:
        for name in datasets:
            tables.append(anova_table(df[df["dataset"] == name], response, scope=name))
        if len(datasets) > 1:
            tables.append(anova_table(df, response, scope="pooled"))
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else _empty(ANOVA_COLUMNS)


# --------------------------------------------------------------------------- paired effects


def _paired_per_seed(sub: pd.DataFrame, factor: str, response: str) -> pd.Series:
    """Per seed: mean over matched cells of (factor on minus factor off)."""
    keys = ["seed", *(f for f in FACTORS if f != factor)]
    wide = sub.pivot_table(index=keys, columns=factor, values=response, aggfunc="mean")
    diff = (wide[1] - wide[0]).dropna()
    return diff.groupby(level="seed").mean()


def cluster_effect(df: pd.DataFrame) -> pd.DataFrame:
    """Effect of ``cluster`` (on minus off): within-seed mean over the other factors'
    matched cells, tested across seeds (n = number of seeds)."""
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        if set(sub["cluster"].unique()) != {0, 1}:
            continue
        for response in CLUSTER_RESPONSES:
            if response not in sub.columns or sub[response].isna().all():
                continue
            per_seed = _paired_per_seed(sub, "cluster", response)
            if per_seed.empty:
                continue
            rows.append({"dataset": name, "response": response, **_seed_row(per_seed)})
    out = _frame(rows, CLUSTER_COLUMNS)
    out["p_holm"] = holm(out["p"])
    return out


def variants_vs_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """Every non-baseline combination minus the baseline, paired by seed, across seeds."""
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        base = sub[sub["combination"] == BASELINE].set_index("seed")
        if base.empty:
            continue
        for combo in sorted(set(sub["combination"]) - {BASELINE}):
            var = sub[sub["combination"] == combo].set_index("seed")
            for response in VARIANT_RESPONSES:
                if response not in sub.columns:
                    continue
                diff = (var[response] - base[response]).dropna()
                if diff.empty:
                    continue
                rows.append({"dataset": name, "combination": combo, "response": response,
                             **_seed_row(diff)})  # fmt: skip
    out = _frame(rows, VARIANT_COLUMNS)
    out["p_holm"] = holm(out["p"])
    return out


def intervention_drops(df: pd.DataFrame, alpha: float = 1 - CI_LEVEL) -> pd.DataFrame:
    """Accuracy drop of every intervention (none minus it) and the paired contrasts of
    DROP_CONTRASTS, per dataset and ``bias_route`` level ("0", "1", and "all"): the mean
    over the level's runs within seed, tested across seeds."""
    present = {c[len("drop_") :] for c in df.columns if c.startswith("drop_")}
    order = [z for z in (*INTERVENTIONS_BIAS, *INTERVENTIONS_CONTROL) if z in present]
    order += sorted(present - set(order))
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        levels = [("all", sub)] + [
            (str(lv), part) for lv, part in sub.groupby("bias_route", sort=True)
        ]
        if sub["bias_route"].nunique() < 2:
            levels = levels[1:]  # "all" would repeat the single level
        for level, part in levels:
            per_seed = part.groupby("seed")
            for z in order:
                kind = "control" if z in INTERVENTIONS_CONTROL else "bias"
                rows.append(
                    _drop_row(name, level, z, kind, per_seed[f"drop_{z}"].mean(), part, alpha)
                )
            for a, b in DROP_CONTRASTS:
                if a in present and b in present:
                    diff = per_seed[f"drop_{a}"].mean() - per_seed[f"drop_{b}"].mean()
                    rows.append(_drop_row(name, level, f"{a} - {b}", "contrast", diff, part, alpha))
    out = _frame(rows, DROP_COLUMNS)
    out["p_holm"] = holm(out["p"])
    return out


def _drop_row(name, level, label, kind, per_seed: pd.Series, part: pd.DataFrame, alpha) -> dict:
    res = seed_test(per_seed, alpha)
    return {"dataset": name, "bias_route": level, "intervention": label, "kind": kind,
            **{k: res[k] for k in SEED_TEST_COLUMNS}, "ci90_low": res["ci90_low"],
            "ci90_high": res["ci90_high"], "n_runs": len(part)}  # fmt: skip


def interaction_means(df: pd.DataFrame) -> pd.DataFrame:
    """Cell means of every factor pair for the interaction plots, with seed-level 95% CIs:
    per seed the mean over the other factors, then a t-interval across seeds."""
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        for response in (r for r in INTERACTION_RESPONSES if r in sub.columns):
            for a, b in itertools.combinations(FACTORS, 2):
                per_seed = sub.groupby([a, b, "seed"])[response].mean()
                for (la, lb), values in per_seed.groupby(level=[0, 1]):
                    res = seed_test(values)
                    rows.append({"dataset": name, "response": response, "factor_a": a,
                                 "level_a": int(la), "factor_b": b, "level_b": int(lb),
                                 **{k: res[k] for k in ("estimate", "ci_low", "ci_high",
                                                        "n_seeds")}})  # fmt: skip
    return _frame(rows, INTERACTION_COLUMNS)


# --------------------------------------------------------------------------- correlations


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows; NaN for rows where either side is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
    num = np.sum(a * b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 1e-12 * np.maximum(1.0, np.abs(num)), num / den, np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho over finite pairs; NaN when undefined (n < 3 or a constant side)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(_row_corr(sps.rankdata(x[ok]), sps.rankdata(y[ok])))


def _seed_resamples(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_seeds) seed indices drawn with replacement: the cluster bootstrap."""
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds)) if n_boot and n_seeds else None


def _boot_rho(x: np.ndarray, y: np.ndarray, seed_of: np.ndarray, idx) -> np.ndarray:
    """Spearman rho over all runs of each resample of seeds (NaN where undefined)."""
    if idx is None:
        return np.empty(0)
    runs = [np.flatnonzero(seed_of == s) for s in range(int(seed_of.max()) + 1)]
    if len({r.size for r in runs}) == 1:  # balanced: one vectorised pass
        grid = np.stack(runs)[idx].reshape(idx.shape[0], -1)
        return _row_corr(sps.rankdata(x[grid], axis=-1), sps.rankdata(y[grid], axis=-1))
    return np.array([spearman(x[np.concatenate([runs[s] for s in b])],
                              y[np.concatenate([runs[s] for s in b])]) for b in idx])  # fmt: skip


def _residualise_within_seed(sub: pd.DataFrame, col: str) -> np.ndarray:
    """Residuals of ``col`` after the factors' main effects, fitted within each seed, so
    that a metric which only follows a factor (cluster) carries nothing into them."""
    out = np.full(len(sub), np.nan)
    for _, part in sub.groupby("seed"):
        pos = sub.index.get_indexer(part.index)
        y = part[col].to_numpy(float)
        varying = [f for f in FACTORS if part[f].nunique() > 1]
        x = np.column_stack([np.ones(len(part)), *(part[f].to_numpy(float) for f in varying)])
        ok = np.isfinite(y)
        if ok.sum() <= x.shape[1]:
            continue
        beta, *_ = np.linalg.lstsq(x[ok], y[ok], rcond=None)
        out[pos[ok]] = y[ok] - x[ok] @ beta
    return out


def _correlation_row(x, y, seeds: np.ndarray, n_boot: int, rng, level: float = CI_LEVEL) -> dict:
    """Pooled rho, its seed-bootstrap interval, and the seed-level t test of rho."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, seeds = x[ok], y[ok], seeds[ok]
    per_seed = [spearman(x[seeds == s], y[seeds == s]) for s in np.unique(seeds)]
    res = seed_test(per_seed)
    row = {"spearman_rho": spearman(x, y), "ci_low": np.nan, "ci_high": np.nan,
           "rho_seed_mean": res["estimate"], "t": res["t"], "df": res["df"], "p": res["p"],
           "n_runs": int(ok.sum()), "n_seeds": res["n_seeds"]}  # fmt: skip
    if n_boot and np.isfinite(row["spearman_rho"]):
        codes = np.unique(seeds, return_inverse=True)[1]
        boot = _boot_rho(x, y, codes, _seed_resamples(codes.max() + 1, n_boot, rng))
        boot = boot[np.isfinite(boot)]
        if boot.size:
            tail = 100 * (1 - level) / 2
            row["ci_low"], row["ci_high"] = np.percentile(boot, [tail, 100 - tail])
    return row


def geometry_correlation(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per dataset and geometry metric: Spearman rho with reader accuracy, ``pooled`` over
    all runs and ``within_cells`` (residuals after the factors' main effects within seed)."""
    if "reader_accuracy" not in df.columns:
        raise ValueError("frame lacks reader_accuracy: expected summary_to_frame output")
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot}: expected a non-negative integer")
    rng = np.random.default_rng(seed)
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        sub = sub.reset_index(drop=True)
        seeds = sub["seed"].to_numpy()
        y = sub["reader_accuracy"].to_numpy(float)
        y_res = _residualise_within_seed(sub, "reader_accuracy")
        for m in (m for m in CORRELATION_METRICS if m in sub.columns):
            x = sub[m].to_numpy(float)
            rows.append({"dataset": name, "metric": m, "kind": "pooled",
                         **_correlation_row(x, y, seeds, n_boot, rng)})  # fmt: skip
            x_res = _residualise_within_seed(sub, m)
            rows.append({"dataset": name, "metric": m, "kind": "within_cells",
                         **_correlation_row(x_res, y_res, seeds, n_boot, rng)})  # fmt: skip
    out = _frame(rows, CORR_COLUMNS)
    out["p_holm"] = holm(out["p"])
    return out


def _depth_stage(depth: str) -> str:
    if depth == PHI_DEPTH:
        return "geometry"
    return "block" if depth.startswith("block") else depth


def tokenflow_curve(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per dataset and depth: Spearman rho of class consistency with reader accuracy.

    The first point (``phi``, stage ``geometry``) is the exposed phi's kNN consistency from
    the geometry probes; then the reader's depths (input, projection, blocks). Intervals:
    per-depth seed-bootstrap percentiles and a joint band over depths (max-t over the
    same resamples); p: Spearman within seed, t-tested across seeds.
    """
    depths = tokenflow_depths(df)
    if not depths or "reader_accuracy" not in df.columns:
        return _empty(TOKENFLOW_COLUMNS)
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot}: expected a non-negative integer")
    rng = np.random.default_rng(seed)
    columns = [(PHI_DEPTH, "knn_consistency")] if "knn_consistency" in df.columns else []
    columns += [(d, f"{TOKENFLOW_PREFIX}{d}") for d in depths]
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        sub = sub.reset_index(drop=True)
        seeds = sub["seed"].to_numpy()
        codes = np.unique(seeds, return_inverse=True)[1]
        idx = _seed_resamples(codes.max() + 1, n_boot, rng)
        y = sub["reader_accuracy"].to_numpy(float)
        block = []
        for i, (depth, col) in enumerate(columns):
            x = sub[col].to_numpy(float)
            row = _correlation_row(x, y, seeds, 0, None)
            boot = _boot_rho(x, y, codes, idx) if np.isfinite(row["spearman_rho"]) else None
            block.append((boot, row))
            rows.append({"dataset": name, "depth": depth, "depth_index": i,
                         "stage": _depth_stage(depth), **row})  # fmt: skip
        _add_bands(rows[-len(columns) :], [b for b, _ in block])
    out = _frame(rows, TOKENFLOW_COLUMNS)
    out["p_holm"] = holm(out["p"])
    return out


def _add_bands(rows: list[dict], boots: list, level: float = CI_LEVEL) -> None:
    """Percentile intervals per depth and a joint (simultaneous) band over depths."""
    tail = 100 * (1 - level) / 2
    live = [i for i, b in enumerate(boots) if b is not None and np.isfinite(b).any()]
    for i in live:
        rows[i]["ci_low"], rows[i]["ci_high"] = np.nanpercentile(boots[i], [tail, 100 - tail])
    if not live:
        return
    rho = np.array([rows[i]["spearman_rho"] for i in live])
    sims = np.stack([boots[i] for i in live], axis=1)  # resamples x depths
    sd = np.nanstd(sims, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.nanmax(np.abs(sims - rho) / np.where(sd > 0, sd, np.nan), axis=1)
    dev = dev[np.isfinite(dev)]
    q = float(np.percentile(dev, level * 100)) if dev.size else 0.0
    for k, i in enumerate(live):
        rows[i]["band_low"] = float(max(-1.0, rho[k] - q * sd[k]))
        rows[i]["band_high"] = float(min(1.0, rho[k] + q * sd[k]))


# --------------------------------------------------------------------------- reader families


def family_frame(ds: xr.Dataset) -> pd.DataFrame:
    """One row per run that exists and fresh reader family (issue 15): grid keys,
    ``combination``, ``reader_family``, ``accuracy``, ``drop_<z>`` (from
    ``fresh_intervention_accuracy``) and ``tokenflow__<i>`` (``fresh_tokenflow_consistency``
    at reader_depth i; 0 is the reader's input). Empty when the summary has no
    ``reader_family`` dimension (a summary made before fresh reader families existed)."""
    if FAMILY not in ds.dims or "fresh_reader_accuracy" not in ds.data_vars:
        return pd.DataFrame()
    _check_summary(ds)
    dims = (*GRID_DIMS, FAMILY)
    ds = ds.assign_coords({FAMILY: [str(f) for f in ds[FAMILY].values]})
    cols = {"accuracy": ds["fresh_reader_accuracy"].transpose(*dims).to_series()}
    if "fresh_intervention_accuracy" in ds.data_vars:
        ia = ds["fresh_intervention_accuracy"].transpose(*dims, "intervention")
        ia = ia.assign_coords(intervention=[str(z) for z in ia["intervention"].values])
        base = ia.sel(intervention="none")
        for z in ia["intervention"].values:
            if z != "none":
                cols[f"drop_{z}"] = (base - ia.sel(intervention=z)).to_series()
    if "fresh_tokenflow_consistency" in ds.data_vars:
        tf = ds["fresh_tokenflow_consistency"]
        depth = next(d for d in tf.dims if d not in dims)
        for i in range(tf.sizes[depth]):
            cols[f"{TOKENFLOW_PREFIX}{i}"] = (
                tf.isel({depth: i}, drop=True).transpose(*dims).to_series()
            )
    df = pd.DataFrame(cols)
    ran = _run_mask(ds).transpose(*GRID_DIMS).to_series()
    keep = ran.reindex(df.index.droplevel(FAMILY)).to_numpy(bool)
    df = df[keep & df["accuracy"].notna().to_numpy()].reset_index()
    _typed_keys(df)
    order = {f: i for i, f in enumerate(READER_FAMILIES)}
    df["_order"] = df[FAMILY].map(lambda f: order.get(f, len(order)))
    df = df.sort_values(["_order", *GRID_DIMS], kind="stable").drop(columns="_order")
    responses = [c for c in cols]
    return df[[*GRID_DIMS, "combination", FAMILY, *responses]].reset_index(drop=True)


def families_of(ff: pd.DataFrame) -> list[str]:
    """The families of a family frame, in study order (then any others, by name)."""
    present = list(dict.fromkeys(ff[FAMILY])) if not ff.empty else []
    return [f for f in READER_FAMILIES if f in present] + sorted(
        f for f in present if f not in READER_FAMILIES
    )


def _contrast_basis(n: int) -> np.ndarray:
    """Orthonormal contrasts of a factor with n levels (n x (n - 1), columns sum to 0)."""
    helmert = np.zeros((n, n - 1))
    for j in range(1, n):
        helmert[:j, j - 1] = 1.0
        helmert[j, j - 1] = -float(j)
    return helmert / np.linalg.norm(helmert, axis=0)


def within_anova(
    data: pd.DataFrame, factors: Sequence[str]
) -> tuple[list[dict], dict[str, float]] | None:
    """Error-stratum F tests of the full factorial over within-seed ``factors`` of any
    number of levels (the binary study factors and reader_family), seed and every
    term x seed random, one value per seed and cell (``_unit``, ``_y``): each term's mean
    square over its term x seed mean square, on (df_T, df_T (S - 1)) df. For binary
    factors this is :func:`anova_table`'s test; a factor of more levels uses orthonormal
    contrasts and the univariate (sphericity-assuming) repeated-measures F, checked
    against statsmodels ``AnovaRM`` in the tests and calibrated by simulation.

    Returns the rows and, per term, its size: the root mean square over the cells of the
    term's component of the cell means (response units). None when the grid is not
    balanced (a seed lacks a cell or has one twice).
    """
    levels = [sorted(data[f].unique()) for f in factors]
    wide = data.pivot_table(index="_unit", columns=list(factors), values="_y", aggfunc="count")
    n_cells = int(np.prod([len(lv) for lv in levels]))
    if wide.shape[1] != n_cells or (wide.fillna(0) != 1).to_numpy().any():
        return None
    y = data.pivot_table(
        index="_unit", columns=list(factors), values="_y", aggfunc="mean"
    ).to_numpy(float)
    n_units = y.shape[0]
    bases = [_contrast_basis(len(lv)) for lv in levels]
    means = [np.full((len(lv), 1), 1.0 / np.sqrt(len(lv))) for lv in levels]
    rows, size = [], {}
    for order in range(1, len(factors) + 1):
        for term in itertools.combinations(range(len(factors)), order):
            b = np.ones((1, 1))
            for i in range(len(factors)):
                b = np.kron(b, bases[i] if i in term else means[i])
            z = y @ b  # units x df_T
            zbar = z.mean(axis=0)
            df_t = float(b.shape[1])
            name = _term_name([factors[i] for i in term])
            ss = float(n_units * np.sum(zbar**2))
            err = float(np.sum((z - zbar) ** 2))
            rows.append(_f_row(name, ss, df_t, err, df_t * (n_units - 1)))
            size[name] = float(np.sqrt(np.sum(zbar**2) / n_cells))
    return rows, size


def _family_data(sub: pd.DataFrame, response: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    data = sub[np.isfinite(sub[response].astype(float))].copy()
    data["_y"] = data[response].astype(float)
    data["_unit"] = data["dataset"].astype(str) + "/" + data["seed"].astype(str)
    varying = [f for f in (*FACTORS, FAMILY) if data[f].nunique() > 1]
    single = [f for f in (*FACTORS, FAMILY) if f not in varying]
    return data, varying, single


def family_anova(ff: pd.DataFrame) -> pd.DataFrame:
    """The fresh readers' ANOVA (issue 15): per dataset and response in FAMILY_RESPONSES
    (named ``fresh_<response>``), the full factorial of the study factors and
    ``reader_family`` as a within-run factor (:func:`within_anova`). The study factor x
    reader_family interactions are the test of reader dependence."""
    tables = []
    if ff.empty:
        return _empty(ANOVA_COLUMNS)
    for name, sub in ff.groupby("dataset", sort=True):
        for response in FAMILY_RESPONSES:
            if response not in sub:
                continue
            data, varying, single = _family_data(sub, response)
            if data.empty or not varying:
                continue
            notes = [f"single-level factors dropped: {', '.join(single)}"] if single else []
            res = within_anova(data, varying)
            if res is None:
                notes.append("unbalanced grid: not tested")
                rows = [{"term": _term_name(varying), "sum_sq": np.nan, "df": np.nan,
                         "error_sum_sq": np.nan, "df_error": np.nan, "F": np.nan,
                         "p": np.nan, "partial_eta_sq": np.nan}]  # fmt: skip
            else:
                rows = res[0]
            out = pd.DataFrame(rows)
            if data["_unit"].nunique() < 2:
                notes.append("one seed: no seed-level error, nothing can be tested")
            out["p_holm"] = holm(out["p"])
            out["p_bh"] = np.nan
            out["non_additivity"] = out["term"].str.contains(":", regex=False)
            out["response"], out["scope"] = f"fresh_{response}", name
            out["method"] = (
                "error-stratum F (seed and term x seed random), reader_family within run, "
                "sphericity assumed"
            )
            out["note"] = "; ".join(notes)
            tables.append(out[ANOVA_COLUMNS])
    return pd.concat(tables, ignore_index=True) if tables else _empty(ANOVA_COLUMNS)


def reader_families(df: pd.DataFrame, ff: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, intervention drops and token-flow consistency per reader: the trained
    reader (``trained``, from the trained-reader columns) and every fresh family; per seed
    the mean over the runs, then across seeds. The fresh families' drops are tested (p,
    Holm within the table); accuracies, consistencies and the trained reader's drops
    (tested in ``intervention_drops``) are described (no p)."""
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        readers = [(TRAINED, sub.rename(columns={"reader_accuracy": "accuracy"}))]
        if not ff.empty:
            part = ff[ff["dataset"] == name]
            readers += [(f, part[part[FAMILY] == f]) for f in families_of(part)]
        for reader, part in readers:
            responses = [c for c in ("accuracy",) if c in part]
            responses += [c for c in part.columns if c.startswith("drop_")]
            if reader != TRAINED:
                responses += [c for c in part.columns if c.startswith(TOKENFLOW_PREFIX)]
            for response in responses:
                per_seed = part.groupby("seed")[response].mean().dropna()
                if per_seed.empty:
                    continue
                kind = ("drop" if response.startswith("drop_") else
                        "tokenflow" if response.startswith(TOKENFLOW_PREFIX) else "accuracy")  # fmt: skip
                res = seed_test(per_seed)
                row = {"dataset": name, "reader_family": reader, "response": response,
                       "kind": kind, **{k: res[k] for k in SEED_TEST_COLUMNS},
                       "ci90_low": res["ci90_low"], "ci90_high": res["ci90_high"],
                       "n_runs": int(part[response].notna().sum())}  # fmt: skip
                if kind != "drop" or reader == TRAINED:
                    # described only (the trained reader's drops are tested in
                    # intervention_drops; not counted twice in the study-wide BH)
                    row.update(t=np.nan, p=np.nan)
                rows.append(row)
    out = _frame(rows, FAMILY_COLUMNS)
    out["p_holm"] = holm(out["p"])
    return out


# --------------------------------------------------------------------------- verdicts


def _per_seed_rho(sub: pd.DataFrame, col: str) -> pd.Series:
    return sub.groupby("seed").apply(
        lambda p: spearman(p[col].to_numpy(float), p["reader_accuracy"].to_numpy(float)),
        include_groups=False,
    )


def judge(est: float, low: float, high: float, p: float, threshold: float, alpha: float) -> str:
    """Three-way outcome of a minimum-effect criterion: 'yes' when significant (p below
    alpha) and the estimate reaches the threshold; 'no' when the whole interval lies
    below the threshold; else 'inconclusive'."""
    if np.isfinite(p) and p < alpha and np.isfinite(est) and est >= threshold and est > 0:
        return "yes"
    if np.isfinite(high) and high < threshold:
        return "no"
    return "inconclusive"


def judge_equivalence(low90: float, high90: float, low: float, high: float, margin: float) -> str:
    """Equivalence within +-margin: 'yes' when the (1 - 2 alpha) interval lies inside the
    margin (TOST), 'no' when the (1 - alpha) interval lies wholly outside it."""
    if np.isfinite(low90) and np.isfinite(high90) and -margin < low90 and high90 < margin:
        return "yes"
    if np.isfinite(low) and (low > margin or high < -margin):
        return "no"
    return "inconclusive"


def _criterion(name, question, scope, criterion, statistic, res, threshold, rule) -> dict:
    return {"dataset": name, "question": question, "scope": scope, "criterion": criterion,
            "statistic": statistic, "estimate": res.get("estimate", np.nan),
            "ci_low": res.get("ci_low", np.nan), "ci_high": res.get("ci_high", np.nan),
            "ci90_low": res.get("ci90_low", np.nan), "ci90_high": res.get("ci90_high", np.nan),
            "threshold": threshold, "p": res.get("p", np.nan), "mde": res.get("mde", np.nan),
            "n_seeds": res.get("n_seeds", 0), "rule": rule}  # fmt: skip


def _clustered_criteria(name: str, sub: pd.DataFrame, v: VerdictConfig) -> list[dict]:
    rows = []
    for response, thr, crit in (
        ("knn_consistency", v.cluster_min_knn_effect, "cluster_raises_knn"),
        ("reader_accuracy", v.cluster_min_accuracy_effect, "cluster_raises_accuracy"),
    ):
        if sub["cluster"].nunique() < 2 or response not in sub:
            res = {}
        else:
            res = seed_test(_paired_per_seed(sub, "cluster", response), v.alpha, v.power)
        rule = f"effect of cluster (on - off) on {response}, per seed, >= {thr}"
        rows.append(_criterion(name, "clustered", "all", crit, f"mean diff {response}", res,
                               thr, rule))  # fmt: skip
    if "knn_consistency" in sub:
        x = _residualise_within_seed(sub, "knn_consistency")
        y = _residualise_within_seed(sub, "reader_accuracy")
        seeds = sub["seed"].to_numpy()
        per_seed = [spearman(x[seeds == s], y[seeds == s]) for s in np.unique(seeds)]
        res = seed_test(per_seed, v.alpha, v.power)
    else:
        res = {}
    rows.append(_criterion(
        name, "clustered", "all", "geometry_tracks_accuracy", "rho within cells", res,
        v.geometry_min_rho,
        f"Spearman rho of knn_consistency with reader accuracy after the factors' main "
        f"effects, within seed, >= {v.geometry_min_rho}",
    ))  # fmt: skip
    return rows


def _routed_criteria(name: str, sub: pd.DataFrame, v: VerdictConfig) -> list[dict]:
    depths = tokenflow_depths(sub)
    blocks = [d for d in depths if d.startswith("block")]
    rows = []
    refs = [("rise_over_phi", "knn_consistency", PHI_DEPTH)]
    if "projection" in depths:
        refs.append(("rise_over_projection", f"{TOKENFLOW_PREFIX}projection", "projection"))
    for crit, col, label in refs:
        res = {}
        if blocks and col in sub:
            last = _per_seed_rho(sub, f"{TOKENFLOW_PREFIX}{blocks[-1]}")
            res = seed_test(last - _per_seed_rho(sub, col), v.alpha, v.power)
        rule = (f"token-flow rho at the last transformer block ({blocks[-1] if blocks else 'none'}) "
                f"minus rho at {label}, per seed, >= {v.routing_min_rise}")  # fmt: skip
        rows.append(_criterion(name, "routed", "all", crit, "rho difference", res,
                               v.routing_min_rise, rule))  # fmt: skip
    return rows


def _bias_criteria(name: str, drops: pd.DataFrame, v: VerdictConfig) -> list[dict]:
    rows = []
    for level, part in drops.groupby("bias_route", sort=True):
        by = part.set_index("intervention")
        scope = f"bias_route={level}"
        if "bias_shuffle" not in by.index:
            continue
        shuffle = by.loc["bias_shuffle"].to_dict()
        rows.append(_criterion(
            name, "bias_route", scope, "shuffle_drop", "mean drop bias_shuffle", shuffle,
            v.bias_min_drop, f"accuracy drop under bias_shuffle >= {v.bias_min_drop}"))  # fmt: skip
        if "col_shuffle" in by.index:
            ctrl = by.loc["col_shuffle"]
            res = {"estimate": shuffle["ci_low"] - ctrl["ci_high"],
                   "n_seeds": shuffle["n_seeds"]}  # fmt: skip
            rows.append(_criterion(
                name, "bias_route", scope, "separated_from_control",
                "bias_shuffle CI low - col_shuffle CI high", res, 0.0,
                "the bias_shuffle drop's CI lies above the col_shuffle control's CI"))  # fmt: skip
        if "bias_zero - bias_shuffle" in by.index:
            rows.append(_criterion(
                name, "bias_route", scope, "shuffle_equivalent_to_zero",
                "mean diff bias_zero - bias_shuffle", by.loc["bias_zero - bias_shuffle"].to_dict(),
                v.bias_equivalence_margin,
                f"bias_zero drop - bias_shuffle drop within +-{v.bias_equivalence_margin}"))  # fmt: skip
        if "bias_mean" in by.index:
            rows.append(_criterion(
                name, "bias_route", scope, "mean_drop", "mean drop bias_mean",
                by.loc["bias_mean"].to_dict(), v.bias_min_drop,
                f"(informative) drop under bias_mean >= {v.bias_min_drop}: sample information, "
                "not a shift of the marginal"))  # fmt: skip
    return rows


def _reader_criteria(name: str, sub: pd.DataFrame, v: VerdictConfig) -> list[dict]:
    if "fresh_reader_accuracy" not in sub:
        return []
    gap = (sub["reader_accuracy"] - sub["fresh_reader_accuracy"]).groupby(sub["seed"]).mean()
    res = seed_test(gap, v.alpha, v.power)
    return [_criterion(
        name, "reader_dependence", "all", "trained_beats_fresh",
        "mean diff trained - fresh reader accuracy", res, v.reader_min_gap,
        f"trained-reader accuracy - fresh-reader accuracy >= {v.reader_min_gap}; 'no' also "
        f"when equivalent within +-{v.reader_min_gap}")]  # fmt: skip


FAMILY_QUESTION = "routing_reader_dependent"
FAMILY_GAP = "drop_gap"  # criterion prefix: "drop_gap <a> - <b>"
FAMILY_INTERACTION = "factor_x_family_interaction"


def _family_criteria(name: str, ff: pd.DataFrame, v: VerdictConfig) -> list[dict]:
    """Is the routing reader-dependent (issue 15)? Per pair of fresh families, the paired
    difference of their bias_shuffle drops (per seed the mean over runs, across seeds);
    and the strongest two-way study factor x reader_family interaction on that drop
    (:func:`within_anova`, Holm over the two-way terms), with its size."""
    if ff.empty or FAMILY_ROUTE not in ff:
        return []
    families = families_of(ff)
    rows = []
    wide = ff.pivot_table(index=["seed", *FACTORS], columns=FAMILY, values=FAMILY_ROUTE)
    for a, b in itertools.combinations(families, 2):
        per_seed = (wide[a] - wide[b]).dropna().groupby(level="seed").mean()
        res = seed_test(per_seed, v.alpha, v.power)
        rows.append(_criterion(
            name, FAMILY_QUESTION, "all", f"{FAMILY_GAP} {a} - {b}",
            f"mean diff bias_shuffle drop {a} - {b}", res, v.family_min_drop_gap,
            f"|bias_shuffle drop of {a} - that of {b}| >= {v.family_min_drop_gap}; 'no' when "
            f"equivalent within +-{v.family_min_drop_gap}"))  # fmt: skip
    data, varying, _ = _family_data(ff, FAMILY_ROUTE)
    res = within_anova(data, varying) if FAMILY in varying and len(varying) > 1 else None
    if res is not None:
        two_way = [r for r in res[0] if r["term"].count(":") == 1 and f"C({FAMILY})" in r["term"]]
        p_adj = holm([r["p"] for r in two_way])
        best = int(np.nanargmin(p_adj)) if np.isfinite(p_adj).any() else 0
        r = two_way[best]
        est = {"estimate": res[1][r["term"]], "p": float(p_adj[best]),
               "n_seeds": int(data["_unit"].nunique())}  # fmt: skip
        rows.append(_criterion(
            name, FAMILY_QUESTION, "all", FAMILY_INTERACTION,
            f"size (RMS over cells) of {pretty(r['term'])}, the strongest of "
            f"{len(two_way)} two-way terms", est, v.family_min_interaction,
            f"a two-way training factor x reader_family interaction on the fresh readers' "
            f"bias_shuffle drop with Holm p (over the two-way terms) below alpha and size "
            f">= {v.family_min_interaction}"))  # fmt: skip
    return rows


def pretty(term: str) -> str:
    """'C(route):C(reader_family)' -> 'route x reader_family'."""
    return " x ".join(t[2:-1] if t.startswith("C(") else t for t in term.split(":"))


def _outcomes(rows: pd.DataFrame, v: VerdictConfig) -> list[str]:
    out = []
    for _, r in rows.iterrows():
        c = r["criterion"]
        if c == "separated_from_control":
            ok = np.isfinite(r["estimate"]) and r["estimate"] > 0
            out.append("yes" if ok else ("no" if np.isfinite(r["estimate"]) else "inconclusive"))
        elif c.startswith(FAMILY_GAP):
            # two-sided: either family may route more; 'no' is equivalence (TOST)
            m = r["threshold"]
            p, est = r["p_holm"], r["estimate"]
            if np.isfinite(p) and p < v.alpha and np.isfinite(est) and abs(est) >= m:
                out.append("yes")
            else:
                eq = judge_equivalence(r["ci90_low"], r["ci90_high"], r["ci_low"], r["ci_high"], m)
                out.append("no" if eq == "yes" else "inconclusive")
        elif c == "shuffle_equivalent_to_zero":
            m = r["threshold"]
            out.append(
                judge_equivalence(r["ci90_low"], r["ci90_high"], r["ci_low"], r["ci_high"], m)
            )
        else:
            o = judge(
                r["estimate"], r["ci_low"], r["ci_high"], r["p_holm"], r["threshold"], v.alpha
            )
            if c == "trained_beats_fresh" and o != "yes":
                eq = judge_equivalence(r["ci90_low"], r["ci90_high"], r["ci_low"], r["ci_high"],
                                       r["threshold"])  # fmt: skip
                o = "no" if eq == "yes" else o
            out.append(o)
    return out


INFORMATIVE = ("mean_drop",)  # reported beside a verdict, not required by it
UNTESTED = (*INFORMATIVE, "shuffle_equivalent_to_zero")  # outside the Holm family
VERDICT_RULES = {
    "clustered": "yes when cluster_raises_knn, cluster_raises_accuracy and "
    "geometry_tracks_accuracy are all yes; no when cluster_raises_knn is yes but "
    "cluster_raises_accuracy is no, or geometry_tracks_accuracy is no; else inconclusive",
    "routed": "yes when rise_over_phi and rise_over_projection are both yes; no when "
    "either is no; else inconclusive",
    "bias_route": "yes when shuffle_drop, separated_from_control and "
    "shuffle_equivalent_to_zero are all yes; no when shuffle_drop is no; else inconclusive "
    "(mean_drop is reported, not required)",
    "reader_dependence": "the outcome of trained_beats_fresh",
    FAMILY_QUESTION: "yes when any drop_gap criterion or factor_x_family_interaction is "
    "yes; no when every drop_gap criterion is no (all fresh families' bias_shuffle drops "
    "equivalent) and factor_x_family_interaction is not yes; else inconclusive",
}


def _combine(question: str, status: dict[str, str]) -> str:
    """The verdict of one question (and scope) from its criteria's outcomes (VERDICT_RULES)."""
    s = status.get
    if not status:
        return "inconclusive"
    if question == "clustered":
        if all(s(c) == "yes" for c in ("cluster_raises_knn", "cluster_raises_accuracy",
                                       "geometry_tracks_accuracy")):  # fmt: skip
            return "yes"
        if (s("cluster_raises_knn") == "yes" and s("cluster_raises_accuracy") == "no") or s(
            "geometry_tracks_accuracy"
        ) == "no":
            return "no"
    elif question == "routed":
        if status and all(o == "yes" for o in status.values()):
            return "yes"
        if "no" in status.values():
            return "no"
    elif question == "bias_route":
        needed = ("shuffle_drop", "separated_from_control", "shuffle_equivalent_to_zero")
        if all(s(c) == "yes" for c in needed):
            return "yes"
        if s("shuffle_drop") == "no":
            return "no"
    elif question == "reader_dependence":
        return s("trained_beats_fresh", "inconclusive")
    elif question == FAMILY_QUESTION:
        gaps = [o for c, o in status.items() if c.startswith(FAMILY_GAP)]
        if "yes" in status.values():
            return "yes"
        if gaps and all(o == "no" for o in gaps):
            return "no"
    return "inconclusive"


def verdict_table(
    df: pd.DataFrame,
    drops: pd.DataFrame,
    v: VerdictConfig | None = None,
    families: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every criterion of the pre-stated rules (config ``verdicts``) and, per dataset,
    question and scope, a ``verdict`` row combining them (VERDICT_RULES).

    The tested criteria of one verdict (dataset, question, scope) are one family:
    ``p_holm`` is Holm within it (informative criteria excluded). The outcome of each
    criterion is :func:`judge` (minimum effect) or :func:`judge_equivalence` (margin).
    """
    v = v or VerdictConfig()
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        sub = sub.reset_index(drop=True)
        rows += _clustered_criteria(name, sub, v)
        rows += _routed_criteria(name, sub, v)
        rows += _bias_criteria(name, drops[drops["dataset"] == name], v)
        rows += _reader_criteria(name, sub, v)
        if families is not None and not families.empty:
            rows += _family_criteria(name, families[families["dataset"] == name], v)
    crit = _frame(rows, VERDICT_COLUMNS)
    if crit.empty:
        return crit
    tested = np.where(crit["criterion"].isin(UNTESTED), np.nan, crit["p"].astype(float))
    crit["p_holm"] = (
        pd.Series(tested, index=crit.index)
        .groupby([crit["dataset"], crit["question"], crit["scope"]], sort=False)
        .transform(lambda p: holm(p))
    )
    crit["outcome"] = _outcomes(crit, v)
    verdicts = []
    for (name, question, scope), part in crit.groupby(["dataset", "question", "scope"], sort=False):
        status = dict(zip(part["criterion"], part["outcome"]))
        verdicts.append({"dataset": name, "question": question, "scope": scope,
                         "criterion": "verdict", "outcome": _combine(question, status),
                         "rule": VERDICT_RULES[question],
                         "n_seeds": int(part["n_seeds"].max())})  # fmt: skip
    verdicts += pooled_verdicts(_frame(verdicts, VERDICT_COLUMNS))
    return pd.concat([crit, _frame(verdicts, VERDICT_COLUMNS)], ignore_index=True)


POOLED_RULE = (
    "across datasets: the datasets' common verdict when they all agree; "
    "dataset-dependent when one is yes and another no; else inconclusive"
)


def pool_outcomes(outcomes: list[str]) -> str:
    """One verdict from the per-dataset verdicts of a question (POOLED_RULE): stated
    before the numbers, and no test of its own, so "yes" across datasets is at most as
    often false as on any one dataset."""
    if outcomes and all(o == outcomes[0] for o in outcomes):
        return outcomes[0]
    if "yes" in outcomes and "no" in outcomes:
        return "dataset-dependent"
    return "inconclusive"


def pooled_verdicts(verdicts: pd.DataFrame) -> list[dict]:
    """With several datasets, one ``pooled`` verdict row per question and scope that
    every dataset answers."""
    names = verdicts["dataset"].unique() if not verdicts.empty else []
    if len(names) < 2:
        return []
    rows = []
    for (question, scope), part in verdicts.groupby(["question", "scope"], sort=False):
        if set(part["dataset"]) != set(names):
            continue
        rows.append({"dataset": POOLED, "question": question, "scope": scope,
                     "criterion": "verdict", "outcome": pool_outcomes(list(part["outcome"])),
                     "rule": POOLED_RULE, "n_seeds": int(part["n_seeds"].sum())})  # fmt: skip
    return rows


# --------------------------------------------------------------------------- all + output


def add_study_bh(tables: dict[str, pd.DataFrame]) -> None:
    """Benjamini-Hochberg over every p-value the study reports (every table's ``p``),
    written into each table's ``p_bh`` column (in place)."""
    keys, ps = [], []
    for name, table in tables.items():
        if "p" not in table.columns or "p_bh" not in table.columns:
            continue
        for i, p in enumerate(pd.to_numeric(table["p"], errors="coerce")):
            if np.isfinite(p):
                keys.append((name, i))
                ps.append(p)
    adjusted = _adjust(ps, "fdr_bh")
    for name, table in tables.items():
        if "p_bh" in table.columns:
            table["p_bh"] = np.nan
    for (name, i), q in zip(keys, adjusted):
        tables[name].iloc[i, tables[name].columns.get_loc("p_bh")] = q


def compute_all(
    ds: xr.Dataset, n_boot: int = 1000, seed: int = 0, verdicts: VerdictConfig | None = None
) -> dict[str, pd.DataFrame]:
    """Every statistics table of DESIGN.md section 5 (keys: study.STATS_TABLES)."""
    df = summary_to_frame(ds)
    ff = family_frame(ds)
    verdicts = verdicts or VerdictConfig()
    drops = intervention_drops(df, verdicts.alpha)
    anova = [t for t in (anova_all(df), family_anova(ff)) if not t.empty]
    tables = {
        "anova": pd.concat(anova, ignore_index=True) if anova else _empty(ANOVA_COLUMNS),
        "cluster_effect": cluster_effect(df),
        "geometry_correlation": geometry_correlation(df, n_boot=n_boot, seed=seed),
        "tokenflow_curve": tokenflow_curve(df, n_boot=n_boot, seed=seed),
        "variants_vs_baseline": variants_vs_baseline(df),
        "intervention_drops": drops,
        "reader_families": reader_families(df, ff),
        "verdicts": verdict_table(df, drops, verdicts, ff),
        "interaction_means": interaction_means(df),
    }
    add_study_bh(tables)
    return {name: tables[name] for name in STATS_TABLES}


def run_stats(summary: xr.Dataset, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """The stats stage: every table of study.STATS_TABLES from the gathered summary."""
    return compute_all(summary, cfg.stats.bootstrap, cfg.stage_seed, cfg.verdicts)


def frame_to_dataset(frame: pd.DataFrame) -> xr.Dataset:
    """A table as an xarray Dataset over dimension ``row``; text columns stored as str."""
    data = {}
    for col in frame.columns:
        values = frame[col]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            # Fixed-width unicode, so netCDF gets a string variable (NaN becomes "").
            arr = np.asarray(values.fillna("").astype(str).to_list(), dtype=str)
        elif pd.api.types.is_bool_dtype(values):
            arr = values.to_numpy(dtype=bool)
        else:
            arr = values.to_numpy()
        data[col] = ("row", arr)
    return xr.Dataset(data, coords={"row": np.arange(len(frame))})


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike) -> list[Path]:
    """Write each table as ``<name>.csv`` and ``<name>.nc`` under ``out_dir`` (atomically)."""
    out = Path(out_dir)
    written = []
    for name, frame in tables.items():
        csv_path, nc_path = out / f"{name}.csv", out / f"{name}.nc"
        write_csv(frame, csv_path)
        write_netcdf(frame_to_dataset(frame), nc_path)
        written += [csv_path, nc_path]
    return written
