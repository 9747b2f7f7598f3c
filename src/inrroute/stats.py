"""Statistics over the gathered summary (DESIGN.md section 5).

Input is the ``results/summary.nc`` Dataset; output is a dict of tidy pandas tables
(ANOVA, cluster effect, geometry correlations, token-flow curve, variants versus the
baseline) that ``write_tables`` stores as CSV and netCDF.

Every function tolerates a partial grid (a smoke run with one seed level, one cluster
level, or only a few combinations): factors with a single level are dropped from the
models, terms that the present cells cannot separate are dropped as aliased, and tests
without residual degrees of freedom report NaN with a ``note`` instead of failing.

ANOVA type: Type II (``anova_lm(typ=2)``). In the planned balanced full factorial Types
I, II and III give the same sums of squares, and the highest-order interactions are the
same under every type. Type II stays meaningful when a run is missing (unbalanced
cells), respects marginality, and, unlike Type III, does not depend on the contrast
coding (Type III main effects under patsy's default treatment coding would test each
factor at the other factors' reference level).
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
import xarray as xr
from scipy import stats as sps
from statsmodels.stats.anova import anova_lm

from inrroute.io import write_csv, write_netcdf

from .config import BASELINE, FACTOR_NAMES
from .probes import GEOMETRY_KEYS

FACTORS = FACTOR_NAMES
GRID_DIMS = ("dataset", "seed", *FACTORS)
ANOVA_RESPONSES = ("reader_accuracy", "knn_consistency", "linear_probe_accuracy", "psnr")
GEOMETRY_METRICS = (*GEOMETRY_KEYS, "fresh_reader_accuracy")
CLUSTER_RESPONSES = ("knn_consistency", "reader_accuracy")
VARIANT_RESPONSES = (
    "reader_accuracy",
    "knn_consistency",
    "linear_probe_accuracy",
    "fresh_reader_accuracy",
    "drop_bias_shuffle",
)

ANOVA_COLUMNS = [
    "response", "scope", "term", "sum_sq", "df", "F", "p",
    "partial_eta_sq", "p_holm", "non_additivity", "note",
]  # fmt: skip
CLUSTER_COLUMNS = ["dataset", "response", "mean_diff", "ci_low", "ci_high", "t", "p", "n_pairs"]
CORR_COLUMNS = ["dataset", "metric", "spearman_rho", "p", "ci_low", "ci_high", "n"]
TOKENFLOW_COLUMNS = [
    "dataset", "depth", "depth_index", "spearman_rho", "p", "ci_low", "ci_high", "n",
]  # fmt: skip
VARIANT_COLUMNS = [
    "dataset",
    "combination",
    "response",
    "mean_diff",
    "ci_low",
    "ci_high",
    "n_pairs",
]


# --------------------------------------------------------------------------- frame


def combination_name(cluster: int, route: int, bias_route: int, dense_fit: int) -> str:
    """The run name of one factor combination, e.g. ``cluster0_route1_biasroute0_densefit1``."""
    return f"cluster{cluster}_route{route}_biasroute{bias_route}_densefit{dense_fit}"


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
    """One row per run that exists: grid keys, ``combination``, scalar responses, ``drop_*``.

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
    if not cols:
        raise ValueError(f"summary has no variable over {list(GRID_DIMS)}: nothing to analyse")
    df = pd.DataFrame(cols)
    responses = list(df.columns)
    df = df[_run_mask(ds).transpose(*GRID_DIMS).to_series().reindex(df.index)].reset_index()
    df["dataset"] = df["dataset"].astype(str)
    for key in ("seed", *FACTORS):
        df[key] = df[key].astype(int)
    df["combination"] = [
        combination_name(*row) for row in df[list(FACTORS)].itertuples(index=False)
    ]
    return df[[*GRID_DIMS, "combination", *responses]].reset_index(drop=True)


# --------------------------------------------------------------------------- ANOVA


def _term_name(factors: Sequence[str]) -> str:
    return ":".join(f"C({f})" for f in factors)


def _estimable_terms(
    data: pd.DataFrame, factors: Sequence[str], block_term: str | None
) -> tuple[list[str], list[str]]:
    """Hierarchical full-factorial terms that raise the design's rank; and the aliased rest.

    With missing cells (a smoke run with two combinations) some terms cannot be told apart
    from others; they are left out instead of fitting a rank-deficient model.
    """
    candidates = [
        _term_name(combo)
        for order in range(1, len(factors) + 1)
        for combo in itertools.combinations(factors, order)
    ]
    head = [block_term] if block_term else []
    # One design matrix for the full model; each term's columns are then tested for
    # whether they add rank to the terms kept before it (hierarchical order).
    design = patsy.dmatrix(" + ".join(["1", *head, *candidates]), data)
    matrix = np.asarray(design)
    slices = design.design_info.term_name_slices
    cols = list(range(slices["Intercept"].start, slices["Intercept"].stop))
    for term in head:
        cols += list(range(slices[term].start, slices[term].stop))
    current = int(np.linalg.matrix_rank(matrix[:, cols]))
    kept, aliased = list(head), []
    for term in candidates:
        trial = cols + list(range(slices[term].start, slices[term].stop))
        new = int(np.linalg.matrix_rank(matrix[:, trial]))
        if new > current:
            kept.append(term)
            cols, current = trial, new
        else:
            aliased.append(term)
    return kept, aliased


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def anova_table(
    df: pd.DataFrame,
    response: str,
    factors: Sequence[str] = FACTORS,
    block: str | None = None,
    scope: str | None = None,
) -> pd.DataFrame:
    """Type II ANOVA of the full factorial over ``factors`` (seeds as replicates).

    ``block="dataset"`` adds ``C(dataset)`` as an additive block. Holm correction runs
    over the non-residual rows of this table; partial eta^2 = SS / (SS + SS_resid).
    ``scope`` labels the table (default: the single dataset's name, or "pooled" with a
    block). Single-level factors and aliased terms are dropped and named in ``note``.
    """
    if response not in df.columns:
        raise ValueError(f"response {response!r} is not a column: expected one of {list(df)}")
    if block not in (None, "dataset"):
        raise ValueError(f"block={block!r}: expected None or 'dataset'")
    missing = [f for f in factors if f not in df.columns]
    if missing:
        raise ValueError(f"factors {missing} are not columns of the frame")
    data = df[df[response].notna() & np.isfinite(df[response].astype(float))].copy()
    if scope is None:
        names = sorted(data["dataset"].unique()) if "dataset" in data else []
        scope = "pooled" if block else (names[0] if len(names) == 1 else "all")
    if data.empty:
        return _empty(ANOVA_COLUMNS)
    data = data.rename(columns={response: "_y"})
    notes: list[str] = []
    varying = [f for f in factors if data[f].nunique() > 1]
    single = [f for f in factors if f not in varying]
    if single:
        notes.append(f"single-level factors dropped: {', '.join(single)}")
    block_term = None
    if block and data[block].nunique() > 1:
        block_term = f"C({block})"
    elif block:
        notes.append(f"block {block} has one level and was dropped")
    terms, aliased = _estimable_terms(data, varying, block_term)
    if aliased:
        notes.append(f"aliased terms dropped (missing cells): {', '.join(aliased)}")

    if not terms:
        resid = data["_y"] - data["_y"].mean()
        notes.append("no factor varies: only the residual is reported")
        table = pd.DataFrame(
            {"sum_sq": [float(resid @ resid)], "df": [float(len(data) - 1)],
             "F": [np.nan], "PR(>F)": [np.nan]},
            index=["Residual"],
        )  # fmt: skip
    else:
        model = smf.ols("_y ~ " + " + ".join(terms), data=data).fit()
        if model.df_resid < 1:
            # Type II needs the residual variance; with one run per cell only sequential
            # sums of squares (identical to Type II in a balanced design) are defined.
            notes.append("no residual degrees of freedom (one run per cell): F and p are NaN")
            with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                table = anova_lm(model, typ=1)
            table["F"] = np.nan
            table["PR(>F)"] = np.nan
            table.loc["Residual", ["sum_sq", "df"]] = [float(model.ssr), 0.0]
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                table = anova_lm(model, typ=2)
        table = table[["sum_sq", "df", "F", "PR(>F)"]]

    out = table.rename(columns={"PR(>F)": "p"}).rename_axis("term").reset_index()
    is_term = (out["term"] != "Residual").to_numpy()
    y = data["_y"].to_numpy(float)
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
        # Round-off in the sums of squares of a constant response would otherwise show
        # up as "significant" F ratios of 1e-30 over 1e-31.
        notes.append("response is constant across runs: nothing to test")
        out[["sum_sq", "F", "p"]] = [0.0, np.nan, np.nan]
    resid = out["term"] == "Residual"
    ss_resid = float(out.loc[resid, "sum_sq"].iloc[0])
    df_resid = float(out.loc[resid, "df"].iloc[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = out["sum_sq"] / (out["sum_sq"] + ss_resid)
    # Without residual degrees of freedom (or variance) partial eta^2 is degenerate.
    ok = is_term & (df_resid > 0) & np.isfinite(out["p"].to_numpy(float))
    out["partial_eta_sq"] = np.where(ok, eta, np.nan)
    out["p_holm"] = holm(np.where(is_term, out["p"], np.nan))
    out["non_additivity"] = out["term"].str.contains(":", regex=False)
    out["response"] = response
    out["scope"] = scope
    out["note"] = "; ".join(notes)
    return out[ANOVA_COLUMNS]


def holm(p: Iterable[float]) -> np.ndarray:
    """Holm step-down adjusted p-values over the finite entries; NaN entries stay NaN.

    Same values as ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``
    (the tests check this), computed directly because that function runs a full
    ``gc.collect()`` on every call (~0.3 s here), which dominated ``anova_all``.
    """
    p = np.asarray(list(p), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = np.argsort(p[ok], kind="stable")
        m = ok.size
        # k-th smallest p times (m - k + 1), made monotone, capped at 1.
        adj = np.minimum(np.maximum.accumulate(p[ok][order] * (m - np.arange(m))), 1.0)
        out[ok[order]] = adj
    return out


def anova_all(df: pd.DataFrame) -> pd.DataFrame:
    """ANOVA tables for the section-5 responses and every ``drop_*``: per dataset and pooled."""
    responses = [r for r in ANOVA_RESPONSES if r in df.columns]
    responses += sorted(c for c in df.columns if c.startswith("drop_"))
    datasets = sorted(df["dataset"].unique())
    tables = []
    for response in responses:
        for name in datasets:
            tables.append(anova_table(df[df["dataset"] == name], response, scope=name))
        if len(datasets) > 1:
            tables.append(anova_table(df, response, block="dataset", scope="pooled"))
    tables = [t for t in tables if not t.empty]
    if not tables:
        return _empty(ANOVA_COLUMNS)
    return pd.concat(tables, ignore_index=True)


# --------------------------------------------------------------------------- paired effects


def paired_t(diff: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean, two-sided t-interval, t and p of paired differences (NaN where undefined)."""
    diff = np.asarray(diff, dtype=float)
    n = diff.size
    res = {"mean_diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "t": np.nan, "p": np.nan}
    if n == 0:
        return res
    mean = float(diff.mean())
    res["mean_diff"] = mean
    if n < 2:
        return res
    se = float(diff.std(ddof=1)) / np.sqrt(n)
    if se == 0.0:
        # Identical differences: the interval collapses; t is infinite unless the mean is 0.
        res.update(ci_low=mean, ci_high=mean)
        if mean != 0.0:
            res.update(t=float(np.copysign(np.inf, mean)), p=0.0)
        return res
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * se
    t = mean / se
    res.update(ci_low=mean - half, ci_high=mean + half, t=t, p=float(2 * sps.t.sf(abs(t), n - 1)))
    return res


def cluster_effect(df: pd.DataFrame) -> pd.DataFrame:
    """Paired effect of ``cluster`` (1 minus 0) on kNN consistency and reader accuracy.

    Pairs match on dataset, seed and the other three factors' levels.
    """
    keys = ["seed", *(f for f in FACTORS if f != "cluster")]
    rows = []
    for name, sub in df.groupby("dataset", sort=True):
        if set(sub["cluster"].unique()) != {0, 1}:
            continue
        for response in CLUSTER_RESPONSES:
            if response not in sub.columns:
                continue
            wide = sub.pivot_table(index=keys, columns="cluster", values=response, aggfunc="mean")
            diff = (wide[1] - wide[0]).dropna().to_numpy()
            if diff.size == 0:
                continue
            rows.append({"dataset": name, "response": response, **paired_t(diff),
                         "n_pairs": int(diff.size)})  # fmt: skip
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS) if rows else _empty(CLUSTER_COLUMNS)


def variants_vs_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """Paired-by-seed difference of every non-baseline combination minus the baseline."""
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
                diff = (var[response] - base[response]).dropna().to_numpy()
                if diff.size == 0:
                    continue
                r = paired_t(diff)
                rows.append({"dataset": name, "combination": combo, "response": response,
                             "mean_diff": r["mean_diff"], "ci_low": r["ci_low"],
                             "ci_high": r["ci_high"], "n_pairs": int(diff.size)})  # fmt: skip
    return pd.DataFrame(rows, columns=VARIANT_COLUMNS) if rows else _empty(VARIANT_COLUMNS)


# --------------------------------------------------------------------------- correlations


def _rank_rows(a: np.ndarray) -> np.ndarray:
    return sps.rankdata(a, axis=-1)


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows; NaN for rows where either side is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
    num = np.sum(a * b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 1e-12 * np.maximum(1.0, np.abs(num)), num / den, np.nan)


def spearman_boot(x: np.ndarray, y: np.ndarray, boot_idx: np.ndarray | None) -> dict[str, float]:
    """Spearman rho and p of finite pairs, with a percentile 95% bootstrap CI over pairs.

    ``boot_idx`` (n_boot, n) resamples the pairs; resamples with a constant side are
    skipped. Constant inputs give NaN without warnings.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    out = {"spearman_rho": np.nan, "p": np.nan, "ci_low": np.nan, "ci_high": np.nan,
           "n": int(x.size)}  # fmt: skip
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = sps.spearmanr(x, y)
    out["spearman_rho"] = float(res.statistic)
    out["p"] = float(res.pvalue)
    if boot_idx is not None and boot_idx.size:
        rho = _row_corr(_rank_rows(x[boot_idx]), _rank_rows(y[boot_idx]))
        rho = rho[np.isfinite(rho)]
        if rho.size:
            out["ci_low"], out["ci_high"] = (float(v) for v in np.percentile(rho, [2.5, 97.5]))
    return out


def _correlate_by_dataset(
    frames: Iterable[tuple[str, pd.DataFrame]],
    pairs: Callable[[pd.DataFrame], Iterable[tuple[dict, np.ndarray, np.ndarray]]],
    n_boot: int,
    seed: int,
) -> list[dict]:
    """Spearman rows for every (dataset, label) pair of arrays; resamples the finite runs."""
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot}: expected a non-negative integer")
    rng = np.random.default_rng(seed)
    rows = []
    for name, sub in frames:
        for label, x, y in pairs(sub):
            ok = np.isfinite(x) & np.isfinite(y)
            n = int(ok.sum())
            idx = rng.integers(0, n, size=(n_boot, n)) if n_boot and n else None
            rows.append({"dataset": name, **label, **spearman_boot(x[ok], y[ok], idx)})
    return rows


def geometry_correlation(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per dataset: Spearman of each geometry metric with reader accuracy across runs."""
    if "reader_accuracy" not in df.columns:
        raise ValueError("frame lacks reader_accuracy: expected summary_to_frame output")
    metrics = [m for m in GEOMETRY_METRICS if m in df.columns]

    def pairs(sub: pd.DataFrame):
        y = sub["reader_accuracy"].to_numpy(float)
        for m in metrics:
            yield {"metric": m}, sub[m].to_numpy(float), y

    frames = ((str(n), s.reset_index(drop=True)) for n, s in df.groupby("dataset", sort=True))
    rows = _correlate_by_dataset(frames, pairs, n_boot, seed)
    return pd.DataFrame(rows, columns=CORR_COLUMNS) if rows else _empty(CORR_COLUMNS)


def tokenflow_curve(ds: xr.Dataset, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per dataset and reader depth: Spearman of token-flow consistency with reader accuracy.

    Runs are all seeds x combinations of the dataset; ``depth_index`` is the position in
    the summary's ``depth`` coordinate (input first).
    """
    _check_summary(ds)
    if "tokenflow_consistency" not in ds.data_vars or "reader_accuracy" not in ds.data_vars:
        return _empty(TOKENFLOW_COLUMNS)
    tf = ds["tokenflow_consistency"].transpose(*GRID_DIMS, "depth")
    acc = ds["reader_accuracy"].transpose(*GRID_DIMS)
    depths = [str(d) for d in tf["depth"].values]

    ran = _run_mask(ds).transpose(*GRID_DIMS)

    def frames():
        for name in ds["dataset"].values:
            a = acc.sel(dataset=name).values.ravel()
            t = tf.sel(dataset=name).values.reshape(a.size, len(depths))
            run = ran.sel(dataset=name).values.ravel()
            cols = {"reader_accuracy": a[run], **{d: t[run, i] for i, d in enumerate(depths)}}
            yield str(name), pd.DataFrame(cols)

    def pairs(sub: pd.DataFrame):
        y = sub["reader_accuracy"].to_numpy(float)
        for i, d in enumerate(depths):
            yield {"depth": d, "depth_index": i}, sub[d].to_numpy(float), y

    rows = _correlate_by_dataset(frames(), pairs, n_boot, seed)
    return pd.DataFrame(rows, columns=TOKENFLOW_COLUMNS) if rows else _empty(TOKENFLOW_COLUMNS)


# --------------------------------------------------------------------------- all + output


def compute_all(ds: xr.Dataset, n_boot: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every statistics table of DESIGN.md section 5 from the gathered summary."""
    df = summary_to_frame(ds)
    return {
        "anova": anova_all(df),
        "cluster_effect": cluster_effect(df),
        "geometry_correlation": geometry_correlation(df, n_boot=n_boot, seed=seed),
        "tokenflow_curve": tokenflow_curve(ds, n_boot=n_boot, seed=seed),
        "variants_vs_baseline": variants_vs_baseline(df),
    }


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


def run_stats(summary: xr.Dataset, cfg) -> dict[str, pd.DataFrame]:
    """Every statistics table (study.STATS_TABLES) from the gathered summary."""
    return compute_all(summary, cfg.stats.bootstrap, cfg.stage_seed)
