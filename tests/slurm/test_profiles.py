"""The Slurm profiles parse as Snakemake reads them and stay in step.

profiles/slurm-ci is a complete copy of profiles/slurm with test-cluster values
(see its header); these checks catch the two drifting apart.  No Slurm needed.
"""

from pathlib import Path

import pytest

yte = pytest.importorskip("yte")  # Snakemake renders profiles with YTE

ROOT = Path(__file__).resolve().parents[2]
GPU_RULES = {"meta_train", "fit", "read", "fresh_reader", "tokenflow", "interventions"}
GROUPED_RULES = {"geometry", "aggregate", "stats", "figures"}
# Top-level keys allowed to differ between the two profiles.
CI_ONLY = {"slurm-status-command", "slurm-init-seconds-before-status-checks"}


def render(name):
    with open(ROOT / "profiles" / name / "config.yaml") as f:
        # require_use_yte: exactly how snakemake.profiles.ProfileConfigFileParser loads it
        return yte.process_yaml(f, require_use_yte=True)


@pytest.fixture(scope="module")
def main():
    return render("slurm")


@pytest.fixture(scope="module")
def ci():
    return render("slurm-ci")


def test_same_keys(main, ci):
    assert set(main) - CI_ONLY == set(ci) - CI_ONLY
    assert set(main["set-resources"]) == set(ci["set-resources"])
    assert main["groups"] == ci["groups"]
    assert set(main["group-components"]) == set(ci["group-components"])
    for rule, res in main["set-resources"].items():
        assert set(res) == set(ci["set-resources"][rule]), rule


@pytest.mark.parametrize("name", ["slurm", "slurm-ci"])
def test_gpu_rules(name):
    prof = render(name)
    assert prof["executor"] == "slurm"
    assert prof["retries"] >= 1
    assert prof["slurm-logdir"] == "logs/slurm"
    for rule in GPU_RULES:
        res = prof["set-resources"][rule]
        assert res["gpu"] == 1, rule  # the plugin's resource -> sbatch --gpus=1
        assert "slurm_extra" not in res, rule
        # more memory and time on each retry
        assert "attempt" in str(res["mem_mb"]) and "attempt" in str(res["runtime"]), rule
    assert GROUPED_RULES <= set(prof["groups"])
    for rule in set(prof["set-resources"]) - GPU_RULES:
        assert "gpu" not in prof["set-resources"][rule], rule


def test_ci_targets_test_cluster(ci):
    assert ci["slurm-status-command"] == "squeue"  # no accounting: sacct would hang
    assert "slurm_account" not in ci["default-resources"]
    parts = {ci["default-resources"]["slurm_partition"]}
    parts |= {r["slurm_partition"] for r in ci["set-resources"].values() if "slurm_partition" in r}
    assert parts == {"main"}
