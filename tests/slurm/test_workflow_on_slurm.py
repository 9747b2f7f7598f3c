"""The real workflow on the live single-node Slurm of tests/slurm/up.sh.

1. The smoke study (config/smoke.yaml) with ``--profile profiles/slurm-ci``, in a copy
   of the repository: every rule but the local ``stage`` becomes a Slurm job, the GPU
   rules ask for the (fake) GPU, and the outputs are those of the local run.
2. The controller itself as a batch job (workflow/submit.sbatch), re-running the final
   rules of that study from inside Slurm.

Skipped when no idle Slurm node answers.  Minutes: the 14 GPU jobs of the smoke study
(4 meta-trainings, then one job per combination and stage for both seeds) share the
test node's fake GPUs.
"""

from __future__ import annotations

import re
import subprocess
import time

import numpy as np
import pytest
import xarray as xr
from slurm_helpers import (
    FIGURES,
    GPU_RULES,
    RUN_FILES,
    SNAKEMAKE,
    STATS_TABLES,
    VENV_BIN,
    cancel_jobs_under,
    env,
    env_without_venv,
    job_state,
    report_time,
    sbatch_calls,
    sbatch_options,
    study_on_slurm,
    wait_for,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SMOKE_LIMIT = 2400  # s; the run takes ~10-20 min on 2 shared cores
RESULTS = "results/smoke"
COMBOS = ("cluster0_route0_biasroute0_densefit0", "cluster1_route1_biasroute1_densefit1")
RUNS = [f"digits/seed{seed}/{combo}" for seed in (0, 1) for combo in COMBOS]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke study through profiles/slurm-ci, in a copy of the repository."""
    return study_on_slurm(
        tmp_path_factory.mktemp("slurm-smoke"),
        ["--profile", "profiles/slurm-ci", "--configfile", "config/smoke.yaml", "--verbose"],
        SMOKE_LIMIT,
        "snakemake-slurm.log",
        "smoke study on Slurm",
        environ=env_without_venv(),  # as `.venv/bin/snakemake ...` from a plain shell
    )


def test_every_output_of_the_local_run(smoke):
    wd, _ = smoke
    results = wd / RESULTS
    for run in RUNS:
        for name in RUN_FILES:
            assert (results / run / name).stat().st_size > 0, f"{run}/{name}"
    for table in STATS_TABLES:
        assert (results / "stats" / f"{table}.csv").stat().st_size > 0, table
    for fig in (*FIGURES, "reconstructions_digits"):
        assert (results / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG", fig
    assert (results / "FINDINGS.md").read_text().startswith("# Findings")
    assert not list(results.rglob("*.tmp")), "a temporary file was left behind"


def test_summary_has_every_run_cell_finite(smoke):
    wd, _ = smoke
    with xr.open_dataset(wd / RESULTS / "summary.nc") as ds:
        ran = ds["ran"].values
        assert ran.sum() == 4  # 2 seeds x 2 combinations
        for name, var in ds.data_vars.items():
            if name != "ran":
                assert np.isfinite(var.values[ran]).all(), f"{name} has a missing value"


def test_nothing_left_to_do(smoke):
    """The local profile finds the Slurm-made study complete and up to date."""
    wd, _ = smoke
    r = subprocess.run(
        [*SNAKEMAKE, "-n", "--profile", "profiles/local", "--configfile", "config/smoke.yaml"],
        check=False,
        cwd=wd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


def test_gpu_rules_ask_for_the_gpu(smoke):
    _, log = smoke
    for rule in GPU_RULES:
        calls = sbatch_calls(log, rule)
        # meta_train: one job per run; the later stages one per combination (batch_runs:
        # combination in config/smoke.yaml) for both seeds; no retries needed.
        expected = 4 if rule == "meta_train" else 2
        assert len(calls) == expected, (rule, len(calls))
        for call in calls:
            opts = sbatch_options(call)
            assert "--gpus=1" in opts or "--gres=gpu:1" in opts, opts
            assert " -p main " in opts and "--export=ALL" in opts, opts
    cpu_calls = [
        c for c in sbatch_calls(log) if not any(f"--comment rule_{r}_" in c for r in GPU_RULES)
    ]
    assert cpu_calls, "no CPU-only Slurm job"
    for call in cpu_calls:
        assert "--gpus" not in sbatch_options(call) and "gres" not in sbatch_options(call), call


def test_stage_ran_locally_and_groups_were_used(smoke):
    _, log = smoke
    assert "localrule stage:" in log
    assert not sbatch_calls(log, "stage")
    comments = re.findall(r"--comment (\S+)", "\n".join(sbatch_calls(log)))
    # A group job's comment is rule_<group>_<rules>, without wildcards.
    assert comments.count("rule_geometry_geometry") == 1  # 2 geometry jobs, one Slurm job
    assert comments.count("rule_final_aggregate_figures_stats") == 1  # the final chain
    grouped = ("rule_geometry_wildcards", "rule_aggregate", "rule_stats", "rule_figures")
    assert not [c for c in comments if c.startswith(grouped)], comments


def test_jobs_found_inrroute_on_path(smoke):
    """The controller ran without the venv on PATH; the Snakefile put the venv's bin first
    and --export=ALL carried that PATH into every job."""
    wd, _ = smoke
    logs = sorted((wd / "logs" / "slurm" / "rule_fit").rglob("*.log"))
    assert logs
    text = logs[0].read_text(errors="replace")
    # The jobstep executor logs its environment (with --verbose).
    path = re.search(r"'PATH': '([^']*)'", text)
    assert path and str(VENV_BIN) in path.group(1).split(":"), path and path.group(1)
    # And the rule's own log shows the CLI ran (it logs the device it chose).
    # One fit job per combination handles both seeds.
    fit_log = (wd / "logs" / "fit" / "digits" / f"{COMBOS[0]}.log").read_text()
    assert "device:" in fit_log
    assert fit_log.count("run 1 of 2") == 1 and fit_log.count("run 2 of 2") == 1


def test_controller_as_batch_job(smoke):
    """workflow/submit.sbatch runs the controller inside Slurm; it re-runs the final rules."""
    wd, _ = smoke
    summary = wd / RESULTS / "summary.nc"
    before = summary.stat().st_mtime
    t0 = time.monotonic()
    r = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "workflow/submit.sbatch",
            "--configfile",
            "config/smoke.yaml",
            "--forcerun",
            "aggregate",
            "--verbose",
        ],
        cwd=wd,
        env=env(INRROUTE_PROFILE="profiles/slurm-ci"),
        capture_output=True,
        text=True,
        check=True,
    )
    job = r.stdout.strip().split(";")[0]
    try:
        state = wait_for(
            lambda: (
                (s := job_state(job))
                not in (None, "PENDING", "RUNNING", "CONFIGURING", "COMPLETING")
                and s
            ),
            timeout=1200,
            interval=2,
            what=f"controller job {job}",
        )
    finally:
        subprocess.run(["scancel", job], check=False)  # no-op when it has ended
        cancel_jobs_under(wd)
    seconds = time.monotonic() - t0
    log = (wd / "logs" / "slurm" / f"controller-{job}.log").read_text(errors="replace")
    assert state == "COMPLETED", f"controller job {job} ended {state}:\n{log[-5000:]}"
    report_time("controller batch job (forcerun aggregate)", seconds)
    # The controller submitted the final rules as Slurm jobs of their own.
    comments = re.findall(r"--comment (\S+)", "\n".join(sbatch_calls(log)))
    assert "rule_final_aggregate_figures_stats" in comments, comments
    assert summary.stat().st_mtime > before
    for fig in FIGURES:
        assert (wd / RESULTS / "figures" / f"{fig}.png").stat().st_mtime > before, fig
    assert (wd / RESULTS / "FINDINGS.md").stat().st_mtime > before
