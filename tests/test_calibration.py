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
