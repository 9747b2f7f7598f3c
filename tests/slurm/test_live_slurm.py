"""End to end against the live single-node Slurm of tests/slurm/up.sh.

Runs tests/slurm/tiny/Snakefile (rules named like the study's, so the workflow
profile's set-resources and groups apply) with the site profile profiles/slurm-ci and
the workflow profile profiles/default, and checks what Slurm
actually did: GPU request, CUDA_VISIBLE_DEVICES, retry with more memory,
grouping, logs.  Skipped when no idle Slurm node answers.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _slurm_up():
    if not shutil.which("sinfo"):
        return False
    r = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.split()[:1] in (["idle"], ["mix"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not _slurm_up():
        pytest.skip("no idle Slurm node (run tests/slurm/up.sh)")
    wd = tmp_path_factory.mktemp("slurm")
    shutil.copy(HERE / "tiny" / "Snakefile", wd / "Snakefile")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(ROOT / "profiles" / "slurm-ci"),
        # The study's own workflow profile: the tiny Snakefile lives elsewhere, where
        # Snakemake would not find it by itself.
        "--workflow-profile",
        str(ROOT / "profiles" / "default"),
        "-d",
        str(wd),
        "-s",
        str(wd / "Snakefile"),
        "--verbose",
    ]
    # timeout: a status misconfiguration makes the plugin wait forever
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    return wd, log


def test_gpu_request_and_device(run):
    wd, log = run
    calls = [line for line in log.splitlines() if line.startswith("sbatch call:")]
    fit = [c for c in calls if "--comment rule_fit " in c]
    assert len(fit) == 1 and "--gpus=1" in fit[0]
    assert "CUDA_VISIBLE_DEVICES=0" in (wd / "fit.txt").read_text()


def test_retry_gets_more_memory(run):
    wd, _ = run
    text = (wd / "read.txt").read_text()
    mems = re.findall(r"mem_mb=(\d+)", text)
    # tiny/Snakefile's read rule asks 500 MB doubled per attempt; Slurm got each request
    assert [int(m) for m in mems] == [500 * 2 ** (a - 1) for a in (1, 2)]
    assert re.findall(r"MinMemoryNode=(\d+)M", text) == mems


def test_grouped_jobs_share_one_slurm_job(run):
    wd, _ = run
    ids = {
        re.search(r"job=(\d+)", (wd / f"geometry_{i}.txt").read_text()).group(1) for i in range(4)
    }
    assert len(ids) == 1
    final = re.findall(r"(?:aggregate|figures) job=(\d+)", (wd / "figures.txt").read_text())
    assert len(final) == 2 and final[0] == final[1]


def test_logs_under_logs_slurm(run):
    wd, _ = run
    for sub in (
        "rule_fit",
        "rule_read",
        "group_geometry_geometry",
        "group_final_aggregate_figures",
    ):
        assert list((wd / "logs" / "slurm" / sub).glob("*.log")), sub
