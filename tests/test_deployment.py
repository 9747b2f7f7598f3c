"""Deployment: the rules find `inrroute` however Snakemake was started, and the conda env
file builds a working environment wherever Snakemake copies it (issue 16, parts 0-1)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the venv the tests run in (.venv/bin in CI)
BARE_PATH = os.pathsep.join(
    d for d in ("/usr/local/bin", "/usr/bin", "/bin") if not (Path(d) / "inrroute").exists()
)


def copy_repo(dst: Path) -> Path:
    """The working tree without venv, results, logs, Snakemake state or git."""
    skip = (".venv", "results", "logs", ".snakemake", ".git", "data", "__pycache__")
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(*skip, ".*_cache"))
    return dst


def test_rule_finds_inrroute_without_venv_on_path(tmp_path):
    """`.venv/bin/snakemake ...` with a PATH that lacks .venv/bin runs a rule's `inrroute`."""
    snakemake = VENV_BIN / "snakemake"
    assert snakemake.exists(), snakemake
    assert shutil.which("inrroute", path=BARE_PATH) is None, BARE_PATH
    wd = copy_repo(tmp_path / "repo")
    env = {**os.environ, "PATH": BARE_PATH}
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run(
        [str(snakemake), "stage_all", "--configfile=config/smoke.yaml", "--cores", "1"],
        cwd=wd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "inrroute: not found" not in log
    assert (wd / "results" / "smoke" / "data" / "digits.nc").stat().st_size > 0
