"""FINDINGS.md text: planted effects appear with their numbers, unanswerable questions are
said to be unanswerable, and significant ANOVA terms are listed exactly."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from inrroute import findings
from synthetic import make_summary

NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)


def cluster_effect_table(ds: xr.Dataset) -> pd.DataFrame:
    """cluster_effect computed by hand: per seed, mean over the other factors of
    cluster=1 minus cluster=0, then a paired t summary over seeds."""
    rows = []
    for name in findings.dataset_names(ds):
        for response in ("knn_consistency", "reader_accuracy"):
            da = ds[response].sel(dataset=name)
            other = [d for d in da.dims if d not in ("seed", "cluster")]
            per_seed = da.mean(dim=other, skipna=True)
            diff = (per_seed.sel(cluster=1) - per_seed.sel(cluster=0)).values
            mean, half = findings.mean_ci(diff)
            t = stats.ttest_1samp(diff, 0.0)
            rows.append(
                {
                    "dataset": name,
                    "response": response,
                    "mean_diff": mean,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "t": t.statistic,
                    "p": t.pvalue,
                    "n_pairs": diff.size,
                }
            )
    return pd.DataFrame(rows)


def geometry_table(name: str = "digits", rho: float = 0.6, n: int = 48) -> pd.DataFrame:
    metrics = ["knn_consistency", "linear_probe_accuracy"]
    return pd.DataFrame(
        {
            "dataset": name,
            "metric": metrics,
            "spearman_rho": [rho, rho / 2],
            "p": [0.001, 0.04],
            "ci_low": [rho - 0.2, 0.01],
            "ci_high": [rho + 0.2, 0.5],
            "n": n,
        }
    )


def curve(
    rhos: list[float], lows: list[float], highs: list[float], name: str = "digits", n: int = 48
) -> pd.DataFrame:
    depths = ["input", "projection", "block1", "block2"][: len(rhos)]
    return pd.DataFrame(
        {
            "dataset": name,
            "depth": depths,
            "depth_index": range(len(rhos)),
            "spearman_rho": rhos,
            "p": 0.01,
            "ci_low": lows,
            "ci_high": highs,
            "n": n,
        }
    )


def anova_row(
    scope: str,
    term: str,
    p_holm: float,
    f: float = 5.0,
    eta: float = 0.2,
    response: str = "reader_accuracy",
    note: str = "",
) -> dict:
    return {
        "response": response,
        "scope": scope,
        "term": term,
        "sum_sq": 1.0,
        "df": 1.0,
        "F": f,
        "p": p_holm,
        "partial_eta_sq": eta,
        "p_holm": p_holm,
        "non_additivity": ":" in term,
        "note": note,
    }


def anova_table() -> pd.DataFrame:
    return pd.DataFrame(
        [
            anova_row("digits", "C(cluster)", 0.001, f=20.0, eta=0.5),
            anova_row("digits", "C(route)", 0.3),
            anova_row("digits", "C(cluster):C(route)", 0.01, f=8.0, eta=0.3),
            anova_row("digits", "C(route):C(bias_route)", 0.2),
            anova_row("digits", "Residual", np.nan, f=np.nan, eta=np.nan),
            anova_row("pooled", "C(dataset)", 1e-6, f=99.0),
            anova_row("pooled", "C(cluster)", 0.4),
            anova_row("pooled", "C(route):C(bias_route):C(dense_fit)", 0.049, f=4.5, eta=0.1),
            anova_row("pooled", "C(cluster)", np.nan, response="psnr", note="no residual df"),
        ]
    )


def variants_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": "digits",
            "combination": [
                "cluster1_route0_biasroute0_densefit0",
                "cluster0_route1_biasroute0_densefit0",
            ],
            "response": "reader_accuracy",
            "mean_diff": [0.05, 0.01],
            "ci_low": [0.02, -0.01],
            "ci_high": [0.08, 0.03],
            "n_pairs": 3,
        }
    )


def tables_for(ds: xr.Dataset) -> dict[str, pd.DataFrame]:
    return {
        "anova": anova_table(),
        "cluster_effect": cluster_effect_table(ds) if ds.sizes["cluster"] > 1 else pd.DataFrame(),
        "geometry_correlation": geometry_table(),
        "tokenflow_curve": curve(
            [0.1, 0.3, 0.6, 0.9], [-0.3, -0.1, -0.1, 0.6], [0.5, 0.6, 0.9, 0.97]
        ),
        "variants_vs_baseline": variants_table(),
    }


@pytest.fixture(scope="module")
def planted() -> xr.Dataset:
    return make_summary(effect=lambda cluster, **_: {"knn_consistency": 0.2 * cluster})


def test_planted_cluster_effect_is_reported(planted: xr.Dataset) -> None:
    text = findings.findings_markdown(planted, tables_for(planted))
    assert text.startswith("# Findings\n")
    match = re.search(r"clustering raises kNN consistency by (\d\.\d{3}) \(95% CI", text)
    assert match, text
    assert float(match.group(1)) == pytest.approx(0.2, abs=0.03)
    assert "trained-reader accuracy" in text
    assert not NAN_WORD.search(text)


def test_planted_effect_through_real_stats(planted: xr.Dataset) -> None:
    stats_mod = pytest.importorskip("inrroute.stats")
    text = findings.findings_markdown(planted, stats_mod.compute_all(planted))
    match = re.search(r"clustering raises kNN consistency by (\d\.\d{3})", text)
    assert match, text
    assert float(match.group(1)) == pytest.approx(0.2, abs=0.03)
    assert not NAN_WORD.search(text)


def test_single_level_cluster_cannot_be_answered() -> None:
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (0, 1, 0, 0)])
    text = findings.findings_markdown(ds, tables_for(ds))
    assert "This run cannot answer whether the supervised clustering pressure" in text
    assert "the factor `cluster` has one level (cluster=0)" in text
    assert "`cluster`, `bias_route`, `dense_fit`" in text  # header lists single-level factors
    assert not NAN_WORD.search(text)


def test_significant_terms_listed_exactly() -> None:
    lines = findings.anova_lines(anova_table())
    assert lines == [
        (
            "- **digits**, reader_accuracy: main effects: cluster (F = 20.00, p_holm = 0.001, "
            "partial η² = 0.500); interactions: cluster × route (F = 8.00, p_holm = 0.01, "
            "partial η² = 0.300)."
        ),
        (
            "- **pooled**, reader_accuracy: main effects: none; interactions: route × bias_route "
            "× dense_fit (F = 4.50, p_holm = 0.049, partial η² = 0.100)."
        ),
        "- **pooled**, psnr: could not be tested in this run: no residual df.",
    ]


def test_tokenflow_rise_and_nowhere() -> None:
    ds = make_summary()
    rising = curve([0.1, 0.3, 0.6, 0.9], [-0.3, -0.1, -0.1, 0.6], [0.5, 0.6, 0.9, 0.97])
    text = findings.tokenflow_sentence("digits", rising)
    assert "first rises at `block2` (rho = 0.900, 95% CI 0.600 to 0.970)" in text
    assert "inside the reader (consistent with routing)" in text
    assert "rho at `input` = 0.100, at the last depth `block2` = 0.900" in text
    at_input = curve([0.8, 0.8], [0.5, 0.5], [0.9, 0.9])
    assert "at the input (consistent with clustering)" in findings.tokenflow_sentence("d", at_input)
    flat = curve([0.1, 0.2], [-0.2, -0.1], [0.4, 0.5])
    assert "rises nowhere" in findings.tokenflow_sentence("d", flat)
    undefined = curve([np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan], n=2)
    assert "cannot be computed from this run" in findings.tokenflow_sentence("d", undefined)
    assert "(n = 2)" in findings.tokenflow_sentence("d", undefined)
    assert "Mean kNN consistency over runs" in findings.consistency_sentence(ds, "digits")


def test_bias_column_section_reports_drops_and_ratio(planted: xr.Dataset) -> None:
    text = findings.bias_section(planted)
    shuffle = re.search(r"\| bias_shuffle \| bias \| (\d\.\d{3}) \|", text)
    control = re.search(r"\| col_shuffle \| control \| (-?\d\.\d{3}) \|", text)
    assert shuffle and control, text
    assert float(shuffle.group(1)) == pytest.approx(0.25, abs=0.02)
    assert float(control.group(1)) == pytest.approx(0.01, abs=0.01)
    assert "Ratio bias_shuffle drop / col_shuffle drop =" in text
    assert "the bias column acts as a sample-dependent causal route" in text


def test_bias_verdict_with_nonpositive_control() -> None:
    text = findings.bias_verdict({"bias_shuffle": (0.01, 0.05), "col_shuffle": (-0.002, 0.01)})
    assert "is not defined: the control drop is -0.002" in text
    assert "does not mark the bias column as a causal route" in text


def test_variants_and_missing_tables() -> None:
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (1, 1, 1, 1)])
    text = findings.findings_markdown(ds, {})
    for key in (
        "cluster_effect",
        "geometry_correlation",
        "tokenflow_curve",
        "anova",
        "variants_vs_baseline",
    ):
        assert f"The statistics table `{key}` is empty or was not computed" in text
    lines = findings.variants_lines({"variants_vs_baseline": variants_table()})
    assert lines[-1] == (
        "- digits, `cluster1_route0_biasroute0_densefit0`, reader_accuracy: +0.050 "
        "(95% CI 0.020 to 0.080; 3 pairs)."
    )
    assert not any("cluster0_route1" in line for line in lines)


def test_smoke_shaped_run_has_no_nan() -> None:
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (1, 1, 1, 1)])
    nan_tables = {
        "cluster_effect": pd.DataFrame(
            {
                "dataset": "digits",
                "response": ["knn_consistency", "reader_accuracy"],
                "mean_diff": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "t": np.nan,
                "p": np.nan,
                "n_pairs": 0,
            }
        ),
        "geometry_correlation": geometry_table(rho=np.nan, n=4).assign(ci_low=np.nan, p=np.nan),
        "tokenflow_curve": curve([np.nan] * 4, [np.nan] * 4, [np.nan] * 4, n=4),
        "anova": pd.DataFrame([anova_row("digits", "C(cluster)", np.nan, note="too few runs")]),
        "variants_vs_baseline": variants_table().assign(ci_low=np.nan, ci_high=np.nan),
    }
    text = findings.findings_markdown(ds, nan_tables)
    assert not NAN_WORD.search(text), text
    assert "cannot be estimated from this run" in text
    assert "no geometry correlation can be computed" in text
    assert "could not be tested in this run: too few runs" in text
