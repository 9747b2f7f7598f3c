"""Shared helpers for the tests that run the real workflow on the live Slurm of up.sh.

Every Snakemake call goes through ``timeout``: a status misconfiguration makes the
Slurm plugin wait forever instead of failing.  ``timeout`` sends SIGTERM first, so
Snakemake cancels the jobs it submitted; ``cancel_jobs_under`` then removes anything
left in the queue from a test's own working copy (never other jobs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from inrroute.study import FIGURES, GPU_RULES, RUN_OUTPUTS, STATS_TABLES  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RUN_FILES = ("model.pt", "train_log.csv", "fitted.nc", *RUN_OUTPUTS)


def slurm_up() -> bool:
    """An idle (or partly used) node answers on the test cluster."""
    if not shutil.which("sinfo"):
        return False
    r = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.split()[:1] in (["idle"], ["mix"])


def env_without_venv(**extra: str) -> dict[str, str]:
    """A controller started as ``.venv/bin/snakemake`` without activating the venv: its
    PATH lacks the venv, and only the Snakefile puts the venv's bin first for the jobs."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN]
    return {**os.environ, "PATH": os.pathsep.join(path), **extra}


def env(**extra: str) -> dict[str, str]:
    """The controller's environment: the venv first on PATH.

    The plugin submits with ``sbatch --export=ALL``, so this PATH is what the jobs'
    shell commands see when they call ``inrroute``.
    """
    return {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **extra}


def copy_repo(dst: Path) -> Path:
    """conftest.copy_repo, plus the folder sbatch --output writes into."""
    import conftest

    conftest.copy_repo(dst)
    (dst / "logs" / "slurm").mkdir(parents=True)  # sbatch --output needs the folder
    return dst


def snakemake_cmd(args: list[str], limit: int) -> list[str]:
    # -k: SIGKILL a minute after SIGTERM if Snakemake does not stop by itself.
    return ["timeout", "-k", "60", str(limit), *SNAKEMAKE, *args]


def run_snakemake(
    args: list[str], cwd: Path, limit: int, logname: str, environ: dict[str, str] | None = None
) -> tuple[int, str, float]:
    """Run Snakemake to the end; returns (exit code, combined log, seconds)."""
    t0 = time.monotonic()
    log_path = cwd / logname
    with open(log_path, "w") as log:
        r = subprocess.run(
            snakemake_cmd(args, limit),
            cwd=cwd,
            env=environ or env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=limit + 120,
        )
    return r.returncode, log_path.read_text(errors="replace"), time.monotonic() - t0


def study_on_slurm(
    base: Path, args: list[str], limit: int, logname: str, what: str, environ=None
) -> tuple[Path, str]:
    """A study run to the end on the live Slurm in a copy of the repository under
    ``base``: skipped without an idle node, its leftover jobs cancelled, its exit code
    checked and its time reported. Returns (working copy, Snakemake's log)."""
    import pytest

    if not slurm_up():
        pytest.skip("no idle Slurm node (run tests/slurm/up.sh)")
    wd = copy_repo(base / "repo")
    try:
        rc, log, seconds = run_snakemake(args, wd, limit, logname, environ)
    finally:
        cancel_jobs_under(wd)
    assert rc == 0, f"snakemake exited {rc} after {seconds:.0f} s:\n{log[-6000:]}"
    report_time(what, seconds, f"({len(sbatch_calls(log))} Slurm jobs)")
    return wd, log


def sbatch_calls(log: str, rule: str | None = None) -> list[str]:
    """The plugin's ``sbatch call:`` lines (logged with --verbose), optionally of one rule."""
    calls = [line for line in log.splitlines() if line.startswith("sbatch call:")]
    if rule is not None:
        calls = [
            c
            for c in calls
            if f"--comment rule_{rule}_wildcards" in c or f"--comment rule_{rule} " in c
        ]
    return calls


def sbatch_options(call: str) -> str:
    """The sbatch options of a call, without the long --wrap command."""
    return call.split(" --wrap=", 1)[0].removeprefix("sbatch call: ")


def job_table() -> list[dict[str, str]]:
    """Jobs squeue knows (finished ones too, for MinJobAge=300 s)."""
    r = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%T|%k|%Z|%r"],
        check=False,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 5:
            rows.append(dict(zip(("id", "state", "comment", "workdir", "reason"), parts)))
    return rows


def job_state(job_id: str) -> str | None:
    """State from scontrol (works for MinJobAge seconds after the end)."""
    r = subprocess.run(
        ["scontrol", "show", "job", job_id], check=False, capture_output=True, text=True
    )
    m = re.search(r"JobState=(\S+)", r.stdout)
    return m.group(1) if m else None


def cancel_jobs_under(wd: Path) -> None:
    """scancel every still queued/running job whose working directory is this copy."""
    for row in job_table():
        active = row["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")
        if active and Path(row["workdir"]).resolve().is_relative_to(wd.resolve()):
            subprocess.run(["scancel", row["id"]], check=False)


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll until predicate() is truthy; returns its value or raises TimeoutError."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def report_time(name: str, seconds: float, extra: str = "") -> None:
    """One line per measurement, in the pytest output (-s) and in a file for CI notes."""
    line = f"[slurm-timing] {name}: {seconds:.0f} s {extra}".rstrip()
    print(line)
    out = os.environ.get("INRROUTE_SLURM_TIMINGS")
    if out:
        with open(out, "a") as fh:
            fh.write(line + "\n")
