"""Each pre-stated verdict rule, with planted data on both sides of its threshold."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inrroute import stats
from inrroute.config import VerdictConfig, load_schema
from synthetic import simulate_study

QUIET = {"n_seeds": 8, "sd_seed": 0.001, "sd_factor_seed": 0.001, "sd_run": 0.001}


def outcomes(planted: dict, seed: int = 0, **noise) -> dict:
    ds = simulate_study(np.random.default_rng(seed), **{**QUIET, **noise}, planted=planted)
    v = stats.compute_all(ds, n_boot=0)["verdicts"]
    return {(r["question"], r["scope"], r["criterion"]): r["outcome"] for _, r in v.iterrows()}


def test_verdict_config_defaults_match_the_schema():
    schema = load_schema()["properties"]["verdicts"]["properties"]
    for field in dataclasses.fields(VerdictConfig):
        assert schema[field.name]["default"] == field.default, field.name


@pytest.mark.parametrize("effect,expected", [(0.03, "yes"), (0.01, "no")])
def test_cluster_knn_threshold(effect, expected):
    out = outcomes({"cluster_knn": effect})
    assert out[("clustered", "all", "cluster_raises_knn")] == expected  # threshold 0.02


@pytest.mark.parametrize("slope,expected", [(8.0, "yes"), (0.0, "no")])
def test_routing_rise_threshold(slope, expected):
    # Blocks follow accuracy (rho near 1, rise near 1 > 0.3) or nothing (rise near 0).
    out = outcomes({"rise": slope}, sd_run=0.005, n_seeds=30)  # rho per seed is noisy
    assert out[("routed", "all", "rise_over_phi")] == expected
    assert out[("routed", "all", "verdict")] == expected


@pytest.mark.parametrize("drop,expected", [(0.03, "yes"), (0.01, "no")])
def test_bias_drop_threshold_per_bias_route_level(drop, expected):
    out = outcomes({"bias_drop": drop})
    assert out[("bias_route", "bias_route=1", "shuffle_drop")] == expected  # delta 0.02
    assert out[("bias_route", "bias_route=1", "verdict")] == expected
    # Where the bias route is off nothing was planted: never a route.
    assert out[("bias_route", "bias_route=0", "verdict")] == "no"


def test_bias_route_needs_separation_from_the_control():
    good = outcomes({"bias_drop": 0.03})
    assert good[("bias_route", "bias_route=1", "separated_from_control")] == "yes"
    assert good[("bias_route", "bias_route=1", "shuffle_equivalent_to_zero")] == "yes"
    # Noisy controls whose CI reaches above the drop's CI: not separated, no 'yes'.
    noisy = outcomes({"bias_drop": 0.03}, n_seeds=3, sd_seed=0.02, sd_run=0.02)
    assert noisy[("bias_route", "bias_route=1", "verdict")] != "yes"


@pytest.mark.parametrize("gap,expected", [(0.02, "yes"), (0.0, "no")])
def test_reader_gap_threshold_and_equivalence(gap, expected):
    out = outcomes({"reader_gap": gap})
    assert out[("reader_dependence", "all", "trained_beats_fresh")] == expected


def test_judge_both_sides():
    assert stats.judge(0.03, 0.025, 0.035, 0.001, 0.02, 0.05) == "yes"
    assert stats.judge(0.015, 0.01, 0.019, 0.001, 0.02, 0.05) == "no"
    assert stats.judge(0.03, -0.01, 0.07, 0.2, 0.02, 0.05) == "inconclusive"
    assert stats.judge_equivalence(-0.005, 0.005, -0.008, 0.008, 0.01) == "yes"
    assert stats.judge_equivalence(0.02, 0.03, 0.015, 0.035, 0.01) == "no"
    assert stats.judge_equivalence(-0.02, 0.02, -0.03, 0.03, 0.01) == "inconclusive"


# ------------------------------------------------------------ routing reader-dependent (issue 15)

FAMILY_Q = ("routing_reader_dependent", "all")


@pytest.mark.parametrize("gap,expected", [(0.04, "yes"), (0.0, "no")])
def test_family_drop_gap_threshold(gap, expected):
    # threshold and margin 0.02: a 0.04 gap is 'yes'; equal drops are equivalent ('no')
    out = outcomes({"family_drop": gap})
    assert out[(*FAMILY_Q, "drop_gap transformer - mlp")] == expected
    assert out[(*FAMILY_Q, "drop_gap transformer - deepsets")] == "no"
    assert out[(*FAMILY_Q, "verdict")] == expected


def test_family_drop_gap_below_the_minimum_is_not_yes():
    # significant (quiet seeds) but 0.01 < 0.02: not 'yes'; inside the margin: 'no'
    out = outcomes({"family_drop": 0.01})
    assert out[(*FAMILY_Q, "drop_gap transformer - mlp")] == "no"


@pytest.mark.parametrize("size,expected", [(0.08, "yes"), (0.02, "inconclusive")])
def test_factor_x_family_interaction_threshold(size, expected):
    # bias_route x reader_family on deepsets' drop: RMS over cells = size * 0.236,
    # 0.019 >= 0.01 ('yes'); 0.005 < 0.01 (not 'yes', and an F test cannot say 'no')
    out = outcomes({"family_interaction": size})
    assert out[(*FAMILY_Q, "factor_x_family_interaction")] == expected
    if expected == "yes":
        assert out[(*FAMILY_Q, "verdict")] == "yes"


def test_one_family_gives_no_family_verdict():
    ds = simulate_study(np.random.default_rng(0), **QUIET).isel(reader_family=[0])
    v = stats.compute_all(ds, n_boot=0)["verdicts"]
    assert not (v["question"] == "routing_reader_dependent").any() or set(
        v.loc[v["question"] == "routing_reader_dependent", "outcome"]
    ) <= {"inconclusive"}


@pytest.mark.parametrize(
    "outcomes_,expected",
    [
        (["yes", "yes"], "yes"),
        (["no", "no"], "no"),
        (["yes", "no"], "dataset-dependent"),
        (["yes", "inconclusive"], "inconclusive"),
        (["inconclusive", "inconclusive"], "inconclusive"),
    ],
)
def test_pooled_verdict_rule(outcomes_, expected):
    assert stats.pool_outcomes(outcomes_) == expected


@pytest.mark.parametrize(
    "gaps,expected", [((0.02, 0.02), "yes"), ((0.02, 0.0), "dataset-dependent")]
)
def test_two_datasets_get_a_pooled_verdict_per_question(gaps, expected):
    import xarray as xr

    parts = [
        simulate_study(
            np.random.default_rng(i), **QUIET, planted={"reader_gap": gap}
        ).assign_coords(dataset=[name])
        for i, (name, gap) in enumerate(zip(("digits", "fashion_mnist"), gaps))
    ]
    v = stats.compute_all(xr.concat(parts, dim="dataset"), n_boot=0)["verdicts"]
    verdicts = v[v["criterion"] == "verdict"]
    pooled = verdicts[verdicts["dataset"] == stats.POOLED]
    per_dataset = verdicts[verdicts["dataset"] != stats.POOLED]
    assert set(zip(pooled["question"], pooled["scope"])) == set(
        zip(per_dataset["question"], per_dataset["scope"])
    )
    reader = pooled[pooled["question"] == "reader_dependence"]
    assert reader["outcome"].tolist() == [expected]
