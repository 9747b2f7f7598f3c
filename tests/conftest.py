"""Shared fixtures: the smoke study run once per session, in a copy of the repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run(args, cwd, timeout=1200, env=None):
    """A command with the venv's bin on PATH (where the rules find `inrroute`), or in
    exactly ``env`` where given; output captured, the exit status left to the caller."""
    if env is None:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def copy_repo(dest: Path) -> Path:
    shutil.copytree(
        ROOT,
        dest,
        ignore=shutil.ignore_patterns(
            ".venv", "results", "logs", ".snakemake", ".git", "data", "__pycache__", ".*_cache"
        ),
    )
    return dest


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke study through the local profile, in a copy of the repository."""
    work = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    res = run(
        SNAKEMAKE
        + ["--profile", "profiles/local", "--configfile", "config/smoke.yaml", "--cores", "2"],
        work,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return work
