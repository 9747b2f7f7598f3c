"""Calibration by simulation (issue 11 part 2): every reported test family keeps its
false-positive rate under null studies with seed-level random effects, and has power for
the planted effects of synthetic.PLANTED. benchmarks/calibration.py prints the table."""

from __future__ import annotations

import pytest

from synthetic import PLANTED, calibrate

N_NULL, N_POWER = 200, 100
SIZE_LIMIT, POWER_FLOOR = 0.08, 0.8
POWERED = (  # families with power >= 0.8 at the planted effects and 3 seeds
    "anova: every factorial term (reader_accuracy)",
    "anova: cluster term (reader_accuracy)",
    "cluster_effect",
    "variants_vs_baseline",
    "geometry_correlation within_cells",
    "tokenflow_curve (per depth)",
    "intervention_drops: bias_shuffle drop",
    "intervention_drops: bias_shuffle - col_shuffle",
    "verdicts: trained - fresh reader",
    "anova: reader_family terms (fresh readers)",
    "verdicts: drop gap between families",
    "verdicts: factor x family interaction",
)


@pytest.fixture(scope="module")
def size() -> dict[str, float]:
    return calibrate(N_NULL, None, seed=0)


@pytest.fixture(scope="module")
def power() -> dict[str, float]:
    return calibrate(N_POWER, PLANTED, seed=1)


def test_every_family_keeps_its_size(size):
    tests = {k: v for k, v in size.items() if not k.startswith("verdict yes")}
    assert len(tests) >= 10
    bad = {k: v for k, v in tests.items() if v > SIZE_LIMIT}
    assert not bad, f"false-positive rate above {SIZE_LIMIT}: {bad}"


def test_null_studies_give_no_yes_verdicts(size):
    verdicts = {k: v for k, v in size.items() if k.startswith("verdict yes")}
    assert verdicts and max(verdicts.values()) <= SIZE_LIMIT, verdicts


def test_planted_effects_are_found(power):
    weak = {k: power[k] for k in POWERED if power[k] < POWER_FLOOR}
    assert not weak, f"power below {POWER_FLOOR} at {PLANTED}: {weak}"


N_POOLED = 60


def test_pooled_verdicts_keep_their_size():
    """Two null datasets (seed-level random effects, no planted effect): the pooled verdict
    (stats.POOLED_RULE) says "yes" no more often than the size limit, per question."""
    import numpy as np
    import xarray as xr

    from inrroute import stats
    from synthetic import simulate_study

    rng = np.random.default_rng(2)
    yes: dict[tuple[str, str], int] = {}
    for _ in range(N_POOLED):
        parts = [
            simulate_study(rng).assign_coords(dataset=[name])
            for name in ("digits", "fashion_mnist")
        ]
        v = stats.compute_all(xr.concat(parts, dim="dataset"), n_boot=0)["verdicts"]
        pooled = v[(v["dataset"] == stats.POOLED) & (v["criterion"] == "verdict")]
        assert not pooled.empty
        for _, r in pooled.iterrows():
            key = (r["question"], r["scope"])
            yes[key] = yes.get(key, 0) + (r["outcome"] == "yes")
    rates = {k: n / N_POOLED for k, n in yes.items()}
    assert max(rates.values()) <= SIZE_LIMIT, rates
