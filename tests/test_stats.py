"""Statistics over the gathered summary, on synthetic summaries with planted structure."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import xarray as xr
from scipy import stats as sps
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

sys.path.insert(0, str(Path(__file__).parent))  # tests/synthetic.py under any import mode
from inrroute import stats
from inrroute.config import StudyConfig
from inrroute.io import read_netcdf, write_netcdf
from inrroute.study import BASELINE, GRID_DIMS, STATS_TABLES
from synthetic import make_summary, simulate_study

INTERACTIONS = [
    "C(cluster):C(route)", "C(cluster):C(bias_route)", "C(cluster):C(dense_fit)",
    "C(route):C(bias_route)", "C(route):C(dense_fit)", "C(bias_route):C(dense_fit)",
    "C(cluster):C(route):C(bias_route)", "C(cluster):C(route):C(dense_fit)",
    "C(cluster):C(bias_route):C(dense_fit)", "C(route):C(bias_route):C(dense_fit)",
    "C(cluster):C(route):C(bias_route):C(dense_fit)",
]  # fmt: skip
MAINS = ["C(cluster)", "C(route)", "C(bias_route)", "C(dense_fit)"]


def _interaction(cluster, route, **_):
    return {"reader_accuracy": -0.3 + 0.1 * cluster * route}


def test_summary_to_frame_rows_names_drops_and_tokenflow():
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (0, 1, 0, 1)])
    df = stats.summary_to_frame(ds)
    assert len(df) == 4
    assert set(df["combination"]) == {BASELINE, "cluster0_route1_biasroute0_densefit1"}
    assert list(df.columns[:7]) == [*GRID_DIMS, "combination"]
    drops = {c for c in df.columns if c.startswith("drop_")}
    assert drops == {f"drop_{z}" for z in ds["intervention"].values if z != "none"}
    assert stats.tokenflow_depths(df) == [str(d) for d in ds["depth"].values]
    row = df.iloc[-1]
    cell = ds.sel(dataset=row["dataset"], seed=row["seed"], cluster=0, route=1,
                  bias_route=0, dense_fit=1)  # fmt: skip
    ia = cell["intervention_accuracy"]
    assert row["drop_bias_shuffle"] == pytest.approx(
        float(ia.sel(intervention="none") - ia.sel(intervention="bias_shuffle"))
    )
    assert "ran" not in df.columns
    pd.testing.assert_frame_equal(stats.summary_to_frame(ds.drop_vars("ran")), df)


def test_summary_to_frame_rejects_a_bad_summary():
    ds = make_summary(seeds=(0,), combos=[(0, 0, 0, 0)])
    with pytest.raises(ValueError, match="lacks dimensions \\['seed'\\]"):
        stats.summary_to_frame(ds.isel(seed=0, drop=True))
    with pytest.raises(ValueError, match="levels \\[2\\]"):
        stats.summary_to_frame(ds.assign_coords(cluster=[2]))


# --------------------------------------------------------------------------- ANOVA


def test_stratified_anova_matches_anova_lm_on_the_saturated_model():
    df = stats.summary_to_frame(make_summary(seed=3))
    t = stats.anova_table(df, "reader_accuracy").set_index("term")
    formula = "reader_accuracy ~ C(seed, Sum) * " + " * ".join(
        f"C({f}, Sum)" for f in stats.FACTORS
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no residual df: anova_lm's own F is NaN
        ref = anova_lm(smf.ols(formula, df).fit(), typ=1)
    for term in [*MAINS, *INTERACTIONS]:
        lm = ":".join(p.replace(")", ", Sum)") for p in term.split(":"))
        ss, err = ref.loc[lm, "sum_sq"], ref.loc[f"C(seed, Sum):{lm}", "sum_sq"]
        assert t.loc[term, "sum_sq"] == pytest.approx(ss)
        assert t.loc[term, "error_sum_sq"] == pytest.approx(err)
        assert t.loc[term, "F"] == pytest.approx(ss / (err / 2))
        assert t.loc[term, "df_error"] == 2
        assert t.loc[term, "partial_eta_sq"] == pytest.approx(ss / (ss + err))
    assert t.loc["C(seed)", "sum_sq"] == pytest.approx(ref.loc["C(seed, Sum)", "sum_sq"])


def test_error_stratum_test_is_the_seed_level_t_test():
    df = stats.summary_to_frame(make_summary(seed=5, effect=_interaction))
    t = stats.anova_table(df, "reader_accuracy").set_index("term")
    per_seed = stats._paired_per_seed(df, "cluster", "reader_accuracy")
    ref = sps.ttest_1samp(per_seed, 0.0)
    assert t.loc["C(cluster)", "p"] == pytest.approx(ref.pvalue)
    assert t.loc["C(cluster)", "F"] == pytest.approx(ref.statistic**2)
    ce = stats.cluster_effect(df).set_index("response").loc["reader_accuracy"]
    assert ce["p"] == pytest.approx(ref.pvalue) and ce["n_seeds"] == 3


def test_planted_interaction_is_found_with_enough_seeds():
    df = stats.summary_to_frame(make_summary(seeds=range(6), effect=_interaction, seed=11))
    t = stats.anova_table(df, "reader_accuracy").set_index("term")
    assert t.loc["C(cluster):C(route)", "p_holm"] < 0.01
    assert t.loc["C(cluster):C(route)", "non_additivity"]
    others = [term for term in INTERACTIONS if term != "C(cluster):C(route)"]
    assert (t.loc[others, "p_holm"] > 0.05).all()
    assert (t.loc[[*MAINS, *INTERACTIONS], "df_error"] == 5).all()


def test_holm_and_bh_match_statsmodels():
    p = np.random.default_rng(1).uniform(size=40) ** 3
    p[[3, 17]] = np.nan
    ok = np.isfinite(p)
    for method in ("holm", "fdr_bh"):
        got = stats._adjust(p, method)
        assert np.isnan(got[~ok]).all()
        np.testing.assert_allclose(got[ok], multipletests(p[ok], method=method)[1])


def test_pooled_anova_has_dataset_by_factor_terms():
    ds = make_summary(datasets=("digits", "fashion_mnist"), seed=4)
    out = stats.anova_all(stats.summary_to_frame(ds))
    assert set(out["scope"]) == {"digits", "fashion_mnist", "pooled"}
    pooled = out[(out["scope"] == "pooled") & (out["response"] == "reader_accuracy")]
    terms = set(pooled["term"])
    assert {"C(dataset)", "C(dataset):C(seed)", "C(cluster)", "C(dataset):C(cluster)"} <= terms
    assert (pooled.set_index("term").loc[MAINS, "df_error"] == 4).all()  # 2 datasets x 2


def test_unbalanced_grid_falls_back_to_mixedlm():
    df = stats.summary_to_frame(make_summary(seed=6)).drop(index=[0, 5])
    t = stats.anova_table(df, "reader_accuracy")
    assert t["method"].str.contains("MixedLM").all() and "unbalanced" in t["note"].iloc[0]
    assert t["p"].notna().all()


def test_partial_grid_and_constant_response():
    df = stats.summary_to_frame(make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (0, 1, 0, 1)]))
    t = stats.anova_table(df, "reader_accuracy")
    assert set(t["term"]) == {"C(seed)", "C(route)"}
    assert "aliased terms dropped" in t["note"].iloc[0] and "single-level" in t["note"].iloc[0]
    df["reader_accuracy"] = 0.9
    const = stats.anova_table(df, "reader_accuracy")
    assert const["p"].isna().all() and "constant" in const["note"].iloc[0]


# --------------------------------------------------------------------------- paired effects


def test_cluster_effect_is_averaged_within_seed():
    ds = make_summary(effect=lambda cluster, **_: {"knn_consistency": 0.2 * cluster}, seed=14)
    df = stats.summary_to_frame(ds)
    out = stats.cluster_effect(df)
    assert list(out.columns) == stats.CLUSTER_COLUMNS
    knn = out.set_index("response").loc["knn_consistency"]
    assert knn["n_seeds"] == 3 and knn["df"] == 2
    per_seed = (
        ds["knn_consistency"].sel(dataset="digits").mean(["route", "bias_route", "dense_fit"])
    )
    diff = (per_seed.sel(cluster=1) - per_seed.sel(cluster=0)).values
    ref = sps.ttest_1samp(diff, 0.0)
    assert knn["estimate"] == pytest.approx(diff.mean()) and knn["p"] == pytest.approx(ref.pvalue)
    lo, hi = ref.confidence_interval()
    assert (knn["ci_low"], knn["ci_high"]) == pytest.approx((lo, hi))


def test_variants_vs_baseline_paired_by_seed():
    def effect(cluster, route, bias_route, dense_fit, **_):
        return 0.1 if (cluster, route, bias_route, dense_fit) == (0, 1, 1, 0) else 0.0

    df = stats.summary_to_frame(make_summary(seeds=range(8), effect=effect, seed=15))
    out = stats.variants_vs_baseline(df)
    assert out["combination"].nunique() == 15 and (out["n_seeds"] == 8).all()
    combo = "cluster0_route1_biasroute1_densefit0"
    hit = out.set_index(["combination", "response"]).loc[(combo, "reader_accuracy")]
    by_seed = df.set_index(["combination", "seed"])["reader_accuracy"]
    ref = sps.ttest_rel(by_seed[combo], by_seed[BASELINE])
    assert hit["p"] == pytest.approx(ref.pvalue) and hit["p_holm"] < 0.05


def test_intervention_drops_per_bias_route_level():
    ds = simulate_study(np.random.default_rng(0), planted={"bias_drop": 0.05})
    out = stats.intervention_drops(stats.summary_to_frame(ds))
    assert list(out.columns) == stats.DROP_COLUMNS
    assert set(out["bias_route"]) == {"all", "0", "1"}
    rows = out.set_index(["bias_route", "intervention"])
    assert rows.loc[("1", "bias_shuffle"), "estimate"] == pytest.approx(0.05, abs=0.01)
    assert abs(rows.loc[("0", "bias_shuffle"), "estimate"]) < 0.01
    assert rows.loc[("1", "bias_shuffle"), "n_runs"] == 24
    assert {"bias_shuffle - col_shuffle", "bias_zero - bias_shuffle"} <= set(out["intervention"])


# --------------------------------------------------------------------------- correlations


def test_within_cell_correlation_removes_a_factor_driven_correlation():
    # knn_consistency and accuracy both follow cluster, nothing else: pooled rho is high,
    # within cells there is nothing.
    def effect(cluster, **_):
        return {"knn_consistency": 0.2 * cluster, "reader_accuracy": 0.1 * cluster}

    df = stats.summary_to_frame(make_summary(seeds=range(4), effect=effect, seed=16))
    out = stats.geometry_correlation(df, n_boot=200, seed=1).set_index(["metric", "kind"])
    assert out.loc[("knn_consistency", "pooled"), "spearman_rho"] > 0.6
    assert abs(out.loc[("knn_consistency", "within_cells"), "spearman_rho"]) < 0.3
    again = stats.geometry_correlation(df, n_boot=200, seed=1).set_index(["metric", "kind"])
    pd.testing.assert_frame_equal(out, again)  # seeded bootstrap


def test_tokenflow_curve_has_phi_first_and_a_joint_band():
    ds = simulate_study(np.random.default_rng(2), planted={"rise": 8.0})
    out = stats.tokenflow_curve(stats.summary_to_frame(ds), n_boot=300, seed=2)
    assert list(out.columns) == stats.TOKENFLOW_COLUMNS
    assert list(out["depth"]) == ["phi", "input", "projection", "block1", "block2"]
    assert list(out["stage"]) == ["geometry", "input", "projection", "block", "block"]
    row = out.set_index("depth")
    assert row.loc["block2", "spearman_rho"] > 0.6 and abs(row.loc["phi", "spearman_rho"]) < 0.4
    assert (row["band_low"] <= row["spearman_rho"]).all()
    assert (row["spearman_rho"] <= row["band_high"]).all()


# --------------------------------------------------------------------------- whole stage


def test_run_stats_tables_bh_and_output(tmp_path):
    ds = make_summary(datasets=("digits",), seeds=(0, 1), combos=[(0, 0, 0, 0), (1, 0, 0, 0)])
    write_netcdf(ds, tmp_path / "summary.nc")
    tables = stats.run_stats(read_netcdf(tmp_path / "summary.nc"), StudyConfig())
    assert list(tables) == list(STATS_TABLES)
    for name, frame in tables.items():
        assert list(frame.columns) == stats.COLUMNS[name]
    # BH over every reported test: p_bh >= p everywhere, and at least one table has tests.
    all_p = [(t["p"].astype(float), t["p_bh"].astype(float)) for t in tables.values()
             if "p_bh" in t]  # fmt: skip
    assert sum(int(p.notna().sum()) for p, _ in all_p) > 0
    for p, q in all_p:
        assert (q[p.notna()] >= p[p.notna()] - 1e-12).all()
    written = stats.write_tables(tables, tmp_path / "stats")
    assert len(written) == 2 * len(STATS_TABLES)
    back = pd.read_csv(tmp_path / "stats" / "verdicts.csv")
    assert list(back.columns) == stats.VERDICT_COLUMNS and len(back) == len(tables["verdicts"])
    with xr.open_dataset(tmp_path / "stats" / "anova.nc") as nc:
        assert nc.sizes["row"] == len(tables["anova"])


# ------------------------------------------------------------ reader families (issue 15)


def test_within_anova_matches_statsmodels_anovarm():
    """The reader_family ANOVA (3 levels, within seed) is the univariate repeated-measures
    F of statsmodels' AnovaRM, term by term; for binary factors it is anova_table's."""
    from statsmodels.stats.anova import AnovaRM

    rng = np.random.default_rng(3)
    rows = [
        {"seed": s, "route": r, "bias_route": b, "reader_family": f,
         "_y": 0.5 * rng.normal() + 0.3 * r * (f == "mlp") + 0.1 * s}
        for s in range(4) for r in (0, 1) for b in (0, 1) for f in ("deepsets", "mlp", "transformer")
    ]  # fmt: skip
    data = pd.DataFrame(rows)
    data["_unit"] = data["seed"].astype(str)
    factors = ["route", "bias_route", "reader_family"]
    ours, size = stats.within_anova(data, factors)
    ref = AnovaRM(data, "_y", "seed", within=factors).fit().anova_table
    ref.index = [":".join(f"C({f})" for f in i.split(":")) for i in ref.index]
    for r in ours:
        np.testing.assert_allclose(r["F"], ref.loc[r["term"], "F Value"], rtol=1e-8)
        np.testing.assert_allclose(r["p"], ref.loc[r["term"], "Pr > F"], rtol=1e-6)
        assert r["df_error"] == ref.loc[r["term"], "Den DF"]
    assert size["C(route):C(reader_family)"] > size["C(bias_route):C(reader_family)"]
    # binary factors only: the study's ANOVA
    sub = data[data["reader_family"] == "mlp"].assign(dataset="digits", cluster=0, dense_fit=0)
    sub["y"] = sub["_y"]
    table = stats.anova_table(sub, "y").set_index("term")
    for r in stats.within_anova(sub, ["route", "bias_route"])[0]:
        np.testing.assert_allclose(r["F"], table.loc[r["term"], "F"], rtol=1e-8)


def test_summary_reader_family_dim_flows_into_the_frames():
    ds = make_summary(families=("transformer", "mlp", "deepsets"), family_drop={"mlp": 0.1})
    assert ds["fresh_reader_accuracy"].dims[-1] == "reader_family"
    df = stats.summary_to_frame(ds)
    # the trained-vs-fresh comparison keeps reading the fresh transformer
    ref = ds["fresh_reader_accuracy"].sel(reader_family="transformer")
    np.testing.assert_allclose(
        np.sort(df["fresh_reader_accuracy"].to_numpy()), np.sort(ref.values.ravel())
    )
    ff = stats.family_frame(ds)
    assert len(ff) == 3 * len(df)
    assert list(dict.fromkeys(ff["reader_family"])) == ["transformer", "mlp", "deepsets"]
    tables = stats.compute_all(ds, n_boot=0)
    fam = tables["reader_families"]
    assert set(fam["reader_family"]) == {"trained", "transformer", "mlp", "deepsets"}
    row = fam[(fam["reader_family"] == "mlp") & (fam["response"] == "drop_bias_shuffle")]
    assert float(row["estimate"].iloc[0]) == pytest.approx(0.35, abs=0.01)
    assert fam.loc[fam["reader_family"] == "trained", "p"].isna().all()  # tested elsewhere
    anova = tables["anova"]
    assert {"fresh_accuracy", "fresh_drop_bias_shuffle"} <= set(anova["response"])
    # a summary without families (older) still works, with no family rows
    old = make_summary()
    assert stats.family_frame(old).empty
    assert stats.compute_all(old, n_boot=0)["reader_families"]["reader_family"].eq("trained").all()
