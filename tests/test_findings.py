"""FINDINGS.md presents the stats tables: rules, numbers and verdicts appear; nothing is
computed here; unanswerable questions and missing power are said in words."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from inrroute import findings, stats
from inrroute.config import StudyConfig, VerdictConfig
from synthetic import make_summary, simulate_study

NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def null_text() -> str:
    ds = simulate_study(np.random.default_rng(3))
    return findings.run_findings(ds, stats.run_stats(ds, StudyConfig()), StudyConfig())


def test_every_question_rule_and_verdict_is_stated(null_text):
    for title in ("## Verdicts", "## 1.", "## 2.", "## 3.", "## 4."):
        assert title in null_text
    for criterion in ("cluster_raises_knn", "geometry_tracks_accuracy", "rise_over_phi",
                      "rise_over_projection", "shuffle_drop", "separated_from_control",
                      "shuffle_equivalent_to_zero", "trained_beats_fresh"):  # fmt: skip
        assert f"`{criterion}`" in null_text
    assert ">= 0.02" in null_text and "+-0.01" in null_text  # thresholds from the config
    assert "bias_route=0" in null_text and "bias_route=1" in null_text
    assert not NAN_WORD.search(null_text)


def test_thresholds_come_from_the_config():
    ds = simulate_study(np.random.default_rng(4))
    v = VerdictConfig(bias_min_drop=0.123)
    text = findings.findings_markdown(ds, stats.compute_all(ds, n_boot=0, verdicts=v), v)
    assert "accuracy drop under bias_shuffle >= 0.123" in text


def test_no_power_is_said_in_words(null_text):
    assert "seeds give no power here" in null_text


def test_planted_verdicts_read_from_the_table():
    ds = simulate_study(np.random.default_rng(5), sd_run=0.001, sd_seed=0.001,
                        sd_factor_seed=0.001, planted={"cluster_knn": 0.1})  # fmt: skip
    tables = stats.compute_all(ds, n_boot=0)
    text = findings.findings_markdown(ds, tables)
    row = tables["cluster_effect"].set_index("response").loc["knn_consistency"]
    assert f"| digits | knn_consistency | {row['estimate']:.3f} |" in text
    assert "`cluster_raises_knn`" in text and "→ **yes**" in text
    # Changing the verdicts table changes the text: findings only presents it.
    tables["verdicts"].loc[tables["verdicts"]["criterion"] == "verdict", "outcome"] = "PLANTED"
    assert "**PLANTED**" in findings.findings_markdown(ds, tables)


def test_missing_tables_and_single_level_cluster():
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (0, 1, 0, 0)])
    text = findings.findings_markdown(ds, {})
    assert "`cluster` has one level" in text
    assert "No verdict could be formed" in text
    assert "`anova` is empty or was not computed" in text
    assert not NAN_WORD.search(text)


def test_smoke_shaped_run_has_no_nan():
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0), (1, 1, 1, 1)])
    text = findings.run_findings(ds, stats.run_stats(ds, StudyConfig()), StudyConfig())
    assert not NAN_WORD.search(text) and "## 4." in text


def test_factor_term_helpers():
    assert findings.pretty_term("C(cluster):C(route)") == "cluster × route"
    assert findings.is_factor_term("C(dataset):C(cluster)")
    assert not findings.is_factor_term("C(dataset):C(seed)")
    assert not findings.is_factor_term("C(dataset)")
    assert findings.pnum(1e-6) == "< 0.0001" and findings.num(float("nan")) == "n/a"
    assert isinstance(findings.missing_table({"a": pd.DataFrame()}, "a"), str)


def test_two_datasets_are_answered_each_and_pooled():
    ds = make_summary(datasets=("digits", "fashion_mnist"), seeds=(0, 1, 2))
    tables = stats.compute_all(ds, n_boot=0)
    text = findings.findings_markdown(ds, tables)
    pooled = tables["verdicts"][tables["verdicts"]["dataset"] == stats.POOLED]
    assert not pooled.empty
    for _, r in pooled.iterrows():
        title = findings.QUESTION_TITLES.get(r["question"], r["question"])
        assert f"| pooled | {title} | {r['scope']} | **{r['outcome']}** |" in text
    for question in ("clustered", "routed", "bias_route", "reader_dependence"):
        for name in ("digits", "fashion_mnist", "pooled"):
            assert f"**{name}, {findings.QUESTION_TITLES[question]}" in text, (name, question)
    assert stats.POOLED_RULE in text


def test_pooling_two_finished_studies_keeps_each_recipe(tmp_path):
    """`inrroute pool`: two single-dataset summaries made with different recipes become the
    two-dataset summary cell for cell; the provenance keeps what they share and names
    what each had of its own; stats and FINDINGS then answer per dataset and pooled."""
    from inrroute import provenance as prov
    from inrroute.errors import InputError
    from inrroute.io import read_netcdf, write_netcdf
    from inrroute.summary import pool_summaries

    both = make_summary(datasets=("digits", "fashion_mnist"), seeds=(0, 1, 2))
    recipes = {"digits": {"training.epochs": 6, "caps.digits": None},
               "fashion_mnist": {"training.epochs": 5, "caps.fashion_mnist": {"train": 6000}}}  # fmt: skip
    parts = []
    for name, own in recipes.items():
        part = both.sel(dataset=[name])
        part.attrs = prov.netcdf_attrs({"model.width": 32, **own}, "aggregate")
        part.attrs["inrroute_git_commit"] = f"commit-{name}"
        write_netcdf(part, tmp_path / f"{name}.nc")
        parts.append((f"results/{name}", read_netcdf(tmp_path / f"{name}.nc")))
    pooled = pool_summaries(parts)
    for var in both.data_vars:
        np.testing.assert_array_equal(pooled[var].values, both[var].values, err_msg=var)
    assert prov.of_attrs(pooled.attrs) == {"model.width": 32}
    studies = {s["source"]: s for s in json.loads(pooled.attrs[prov.POOLED_ATTR])}
    assert studies["results/fashion_mnist"]["values"] == recipes["fashion_mnist"]
    assert studies["results/digits"]["datasets"] == ["digits"]

    tables = stats.compute_all(pooled, n_boot=0)
    assert set(tables["verdicts"]["dataset"]) == {"digits", "fashion_mnist", stats.POOLED}
    text = findings.run_findings(pooled, tables, StudyConfig())
    assert "Pooled from separate studies" in text
    assert "`training.epochs` = `5`" in text and "commit `commit-digits`" in text

    with pytest.raises(InputError, match="'digits' is in both"):
        pool_summaries([parts[0], ("results/again", parts[0][1])])
    with pytest.raises(InputError, match="two or more"):
        pool_summaries(parts[:1])
