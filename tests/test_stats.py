"""Statistics over the gathered summary, on synthetic summaries with planted structure."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

sys.path.insert(0, str(Path(__file__).parent))  # tests/synthetic.py under any import mode
from inrroute import stats
from inrroute.io import read_netcdf, write_netcdf
from synthetic import make_summary

INTERACTIONS = [
    "C(cluster):C(route)", "C(cluster):C(bias_route)", "C(cluster):C(dense_fit)",
    "C(route):C(bias_route)", "C(route):C(dense_fit)", "C(bias_route):C(dense_fit)",
    "C(cluster):C(route):C(bias_route)", "C(cluster):C(route):C(dense_fit)",
    "C(cluster):C(bias_route):C(dense_fit)", "C(route):C(bias_route):C(dense_fit)",
    "C(cluster):C(route):C(bias_route):C(dense_fit)",
]  # fmt: skip


def _interaction(cluster, route, **_):
    return {"reader_accuracy": -0.3 + 0.1 * cluster * route}  # 0.5 + 0.1 c r + noise


def _additive(cluster, route, bias_route, dense_fit, **_):
    return {"reader_accuracy": 0.05 * cluster + 0.04 * route + 0.06 * bias_route
            - 0.05 * dense_fit}  # fmt: skip


def _rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("term")


# --------------------------------------------------------------------------- frame


def test_summary_to_frame_rows_names_and_drops():
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (0, 1, 0, 1)])
    df = stats.summary_to_frame(ds)
    # 2 seeds x 2 combinations made; the 2 x 2 other cells of the grid are not runs.
    assert len(df) == 4
    assert set(df["combination"]) == {stats.BASELINE, "cluster0_route1_biasroute0_densefit1"}
    assert list(df.columns[:7]) == [*stats.GRID_DIMS, "combination"]
    drops = {c for c in df.columns if c.startswith("drop_")}
    assert drops == {f"drop_{z}" for z in ds["intervention"].values if z != "none"}
    row = df.iloc[-1]
    cell = ds.sel(dataset=row["dataset"], seed=row["seed"], cluster=0, route=1,
                  bias_route=0, dense_fit=1)  # fmt: skip
    ia = cell["intervention_accuracy"]
    assert row["drop_bias_shuffle"] == pytest.approx(
        float(ia.sel(intervention="none") - ia.sel(intervention="bias_shuffle"))
    )
    assert row["reader_accuracy"] == pytest.approx(float(cell["reader_accuracy"]))
    # The gathered ``ran`` flag marks runs; it is not a response, and without it the
    # finite values identify the same runs.
    assert "ran" not in df.columns
    pd.testing.assert_frame_equal(stats.summary_to_frame(ds.drop_vars("ran")), df)


def test_summary_to_frame_rejects_a_bad_summary():
    ds = make_summary(seeds=(0,), combos=[(0, 0, 0, 0)])
    with pytest.raises(ValueError, match="lacks dimensions \\['seed'\\]"):
        stats.summary_to_frame(ds.isel(seed=0, drop=True))
    with pytest.raises(ValueError, match="levels \\[2\\]"):
        stats.summary_to_frame(ds.assign_coords(cluster=[2]))


# --------------------------------------------------------------------------- ANOVA


@pytest.fixture(scope="module")
def interaction_frame() -> pd.DataFrame:
    return stats.summary_to_frame(make_summary(effect=_interaction, seed=11))


def test_planted_interaction_is_found(interaction_frame):
    t = _rows(stats.anova_table(interaction_frame, "reader_accuracy"))
    assert t.loc["C(cluster):C(route)", "p_holm"] < 0.01
    assert t.loc["C(cluster):C(route)", "non_additivity"]
    others = [term for term in INTERACTIONS if term != "C(cluster):C(route)"]
    # Holm controls the family-wise error: none of the null interactions survives it.
    assert (t.loc[others, "p_holm"] > 0.05).all()
    assert set(t.index) == {"C(cluster)", "C(route)", "C(bias_route)", "C(dense_fit)",
                            *INTERACTIONS, "Residual"}  # fmt: skip
    assert t.loc["Residual", "df"] == 48 - 16
    assert not t.loc[["C(cluster)", "Residual"], "non_additivity"].any()
    assert (t["note"] == "").all() and (t["scope"] == "digits").all()


def test_additive_design_shows_no_interaction():
    df = stats.summary_to_frame(make_summary(effect=_additive, seed=12))
    t = _rows(stats.anova_table(df, "reader_accuracy"))
    assert (t.loc[["C(cluster)", "C(route)", "C(bias_route)", "C(dense_fit)"], "p_holm"]
            < 0.01).all()  # fmt: skip
    assert (t.loc[INTERACTIONS, "p_holm"] > 0.05).all()


def test_partial_eta_squared_by_hand(interaction_frame):
    df = interaction_frame
    y = df["reader_accuracy"]
    # Balanced 2-level factor: SS_A = sum over levels of n_level * (mean_level - mean)^2;
    # residual SS of the full factorial = squared deviations from the 16 cell means.
    levels = df.groupby("cluster")["reader_accuracy"].agg(["mean", "size"])
    ss_a = float((levels["size"] * (levels["mean"] - y.mean()) ** 2).sum())
    ss_res = float(((y - df.groupby("combination")["reader_accuracy"].transform("mean")) ** 2)
                   .sum())  # fmt: skip
    t = _rows(stats.anova_table(df, "reader_accuracy"))
    assert t.loc["C(cluster)", "sum_sq"] == pytest.approx(ss_a)
    assert t.loc["Residual", "sum_sq"] == pytest.approx(ss_res)
    assert t.loc["C(cluster)", "partial_eta_sq"] == pytest.approx(ss_a / (ss_a + ss_res))
    f = (ss_a / 1) / (ss_res / 32)
    assert t.loc["C(cluster)", "F"] == pytest.approx(f)
    assert t.loc["C(cluster)", "p"] == pytest.approx(sps.f.sf(f, 1, 32))


def test_holm_matches_statsmodels(interaction_frame):
    t = stats.anova_table(interaction_frame, "reader_accuracy")
    terms = t[t["term"] != "Residual"]
    expected = multipletests(terms["p"].to_numpy(), method="holm")[1]
    np.testing.assert_allclose(terms["p_holm"].to_numpy(), expected, rtol=1e-12)
    assert np.isnan(t.loc[t["term"] == "Residual", "p_holm"]).all()
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.5, 0.001])
    got = stats.holm(p)
    ok = ~np.isnan(p)
    np.testing.assert_allclose(got[ok], multipletests(p[ok], method="holm")[1])
    assert np.isnan(got[1])


def test_anova_all_per_dataset_and_pooled():
    df = stats.summary_to_frame(make_summary(datasets=("digits", "mnist"), seed=13))
    t = stats.anova_all(df)
    drops = sorted(c for c in df.columns if c.startswith("drop_"))
    assert set(t["response"]) == {*stats.ANOVA_RESPONSES, *drops}
    assert set(t["scope"]) == {"digits", "mnist", "pooled"}
    pooled = t[(t["scope"] == "pooled") & (t["response"] == "psnr")].set_index("term")
    assert "C(dataset)" in pooled.index and pooled.loc["Residual", "df"] == 96 - 16 - 1
    single = stats.anova_all(stats.summary_to_frame(make_summary(seed=13)))
    assert set(single["scope"]) == {"digits"}


def test_anova_on_a_partial_grid_notes_what_was_dropped():
    # route and dense_fit change together: dense_fit is aliased with route.
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (0, 1, 0, 1)])
    t = stats.anova_table(stats.summary_to_frame(ds), "reader_accuracy")
    assert list(t["term"]) == ["C(route)", "Residual"]
    assert np.isfinite(t["p"].iloc[0]) and t["df"].iloc[1] == 2
    assert "single-level factors dropped: cluster, bias_route" in t["note"].iloc[0]
    assert "aliased" in t["note"].iloc[0] and "C(dense_fit)" in t["note"].iloc[0]


def test_anova_without_residual_df_returns_nan_and_a_note():
    ds = make_summary(seeds=(0,), combos=[(0, 0, 0, 0), (1, 0, 0, 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = stats.anova_table(stats.summary_to_frame(ds), "reader_accuracy")
    assert list(t["term"]) == ["C(cluster)", "Residual"]
    assert t[["F", "p", "p_holm", "partial_eta_sq"]].isna().all().all()
    assert "no residual degrees of freedom" in t["note"].iloc[0]
    one = stats.anova_table(stats.summary_to_frame(make_summary(seeds=(0,), combos=[(0,) * 4])),
                            "psnr")  # fmt: skip
    assert list(one["term"]) == ["Residual"] and "no factor varies" in one["note"].iloc[0]


def test_constant_response_is_not_significant(interaction_frame):
    df = interaction_frame.assign(flat=0.3)
    t = stats.anova_table(df, "flat")
    assert t["p"].isna().all() and "constant" in t["note"].iloc[0]


def test_anova_bad_arguments(interaction_frame):
    with pytest.raises(ValueError, match="'nope'"):
        stats.anova_table(interaction_frame, "nope")
    with pytest.raises(ValueError, match="block='seed'"):
        stats.anova_table(interaction_frame, "psnr", block="seed")


# --------------------------------------------------------------------------- paired effects


def test_cluster_effect_recovers_a_planted_shift():
    ds = make_summary(effect=lambda cluster, **_: {"knn_consistency": 0.2 * cluster}, seed=14)
    df = stats.summary_to_frame(ds)
    out = stats.cluster_effect(df).set_index("response")
    assert list(stats.cluster_effect(df).columns) == stats.CLUSTER_COLUMNS
    knn = out.loc["knn_consistency"]
    assert knn["n_pairs"] == 3 * 8
    assert knn["mean_diff"] == pytest.approx(0.2, abs=0.04)
    assert knn["ci_low"] > 0.1 and knn["p"] < 1e-6
    assert abs(out.loc["reader_accuracy", "mean_diff"]) < 0.03
    # Pairing by seed and the other factors is a paired t-test on matched runs.
    keys = ["seed", "route", "bias_route", "dense_fit"]
    c0 = df[df["cluster"] == 0].sort_values(keys)["knn_consistency"].to_numpy()
    c1 = df[df["cluster"] == 1].sort_values(keys)["knn_consistency"].to_numpy()
    ref = sps.ttest_rel(c1, c0)
    assert knn["t"] == pytest.approx(ref.statistic) and knn["p"] == pytest.approx(ref.pvalue)
    lo, hi = ref.confidence_interval()
    assert (knn["ci_low"], knn["ci_high"]) == pytest.approx((lo, hi))


def test_cluster_effect_with_one_cluster_level_is_empty():
    df = stats.summary_to_frame(make_summary(combos=[(0, 0, 0, 0), (0, 1, 0, 0)]))
    out = stats.cluster_effect(df)
    assert out.empty and list(out.columns) == stats.CLUSTER_COLUMNS


def test_variants_vs_baseline_recovers_a_planted_variant():
    def effect(cluster, route, bias_route, dense_fit, **_):
        return 0.1 if (cluster, route, bias_route, dense_fit) == (0, 1, 1, 0) else 0.0

    df = stats.summary_to_frame(make_summary(seeds=range(8), effect=effect, seed=15))
    out = stats.variants_vs_baseline(df)
    assert list(out.columns) == stats.VARIANT_COLUMNS
    assert out["combination"].nunique() == 15 and stats.BASELINE not in set(out["combination"])
    assert set(out["response"]) == set(stats.VARIANT_RESPONSES)
    assert (out["n_pairs"] == 8).all()
    combo = "cluster0_route1_biasroute1_densefit0"
    hit = out.set_index(["combination", "response"]).loc[(combo, "reader_accuracy")]
    assert hit["mean_diff"] == pytest.approx(0.1, abs=0.03) and hit["ci_low"] > 0.05
    by_seed = df.set_index(["combination", "seed"])["reader_accuracy"]
    ref = sps.ttest_rel(by_seed[combo], by_seed[stats.BASELINE]).confidence_interval()
    assert (hit["ci_low"], hit["ci_high"]) == pytest.approx((ref.low, ref.high))


# --------------------------------------------------------------------------- correlations


def test_geometry_correlation_finds_a_metric_that_tracks_accuracy():
    ds = make_summary(seeds=range(4), seed=16)
    rng = np.random.default_rng(0)
    acc = ds["reader_accuracy"]
    ds["ncm_accuracy"] = acc + 1e-4 * rng.normal(size=acc.shape)
    out = stats.geometry_correlation(stats.summary_to_frame(ds), n_boot=200, seed=1)
    assert list(out.columns) == stats.CORR_COLUMNS
    assert list(out["metric"]) == list(stats.GEOMETRY_METRICS)
    ncm = out.set_index("metric").loc["ncm_accuracy"]
    assert ncm["spearman_rho"] > 0.95 and ncm["ci_low"] > 0.9 and ncm["n"] == 64
    again = stats.geometry_correlation(stats.summary_to_frame(ds), n_boot=200, seed=1)
    pd.testing.assert_frame_equal(out, again)  # seeded bootstrap


def test_tokenflow_curve_finds_the_predictive_depth():
    ds = make_summary(seeds=range(6), seed=17)
    rng = np.random.default_rng(1)
    acc = ds["reader_accuracy"]
    tf = ds["tokenflow_consistency"].copy()
    tf.loc[{"depth": "input"}] = rng.uniform(size=acc.shape)  # independent of accuracy
    tf.loc[{"depth": "block2"}] = acc + 1e-3 * rng.normal(size=acc.shape)
    tf.loc[{"depth": "projection"}] = 0.4  # constant: rho undefined
    ds["tokenflow_consistency"] = tf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = stats.tokenflow_curve(ds, n_boot=300, seed=2)
    assert list(out.columns) == stats.TOKENFLOW_COLUMNS
    assert list(out["depth"]) == ["input", "projection", "block1", "block2"]
    assert list(out["depth_index"]) == [0, 1, 2, 3]
    row = out.set_index("depth")
    assert row.loc["block2", "spearman_rho"] > 0.98 and row.loc["block2", "ci_low"] > 0.95
    assert abs(row.loc["input", "spearman_rho"]) < 0.25
    assert row.loc["input", "ci_low"] < 0 < row.loc["input", "ci_high"]
    assert np.isnan(row.loc["projection", ["spearman_rho", "p", "ci_low", "ci_high"]]
                    .astype(float)).all()  # fmt: skip
    assert (out["n"] == 6 * 16).all()


# --------------------------------------------------------------------------- smoke + output


def test_smoke_summary_runs_end_to_end(tmp_path):
    ds = make_summary(datasets=("digits",), seeds=(0, 1), combos=[(0, 0, 0, 0), (1, 0, 0, 0)])
    # Through netCDF as the workflow does: coordinates and the ``ran`` flag must survive.
    write_netcdf(ds, tmp_path / "summary.nc")
    ds = read_netcdf(tmp_path / "summary.nc")
    tables = stats.compute_all(ds, n_boot=50, seed=0)
    assert set(tables) == {"anova", "cluster_effect", "geometry_correlation", "tokenflow_curve",
                           "variants_vs_baseline"}  # fmt: skip
    written = stats.write_tables(tables, tmp_path / "stats")
    assert len(written) == 10
    for name, frame in tables.items():
        back = pd.read_csv(tmp_path / "stats" / f"{name}.csv")
        assert list(back.columns) == list(frame.columns) and len(back) == len(frame)
        with xr.open_dataset(tmp_path / "stats" / f"{name}.nc") as nc:
            assert set(nc.data_vars) == set(frame.columns) and nc.sizes["row"] == len(frame)
            for col in frame.columns:
                if not pd.api.types.is_numeric_dtype(frame[col]):
                    assert nc[col].dtype.kind in "UO"
                    assert list(nc[col].values.astype(str)) == list(
                        frame[col].fillna("").astype(str)
                    )
                else:
                    np.testing.assert_allclose(nc[col].values.astype(float),
                                               frame[col].to_numpy(float))  # fmt: skip
    anova = tables["anova"]
    assert set(anova["term"]) == {"C(cluster)", "Residual"} and anova["p"].notna().any()
    assert len(tables["cluster_effect"]) == 2  # cluster has two levels here


def test_write_tables_handles_empty_tables(tmp_path):
    empty = stats.cluster_effect(stats.summary_to_frame(make_summary(combos=[(0, 0, 0, 0)])))
    stats.write_tables({"cluster_effect": empty}, tmp_path)
    with xr.open_dataset(tmp_path / "cluster_effect.nc") as nc:
        assert nc.sizes["row"] == 0 and set(nc.data_vars) == set(stats.CLUSTER_COLUMNS)
    assert list(pd.read_csv(tmp_path / "cluster_effect.csv").columns) == stats.CLUSTER_COLUMNS
