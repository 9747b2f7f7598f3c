"""Deployment: the rules find `inrroute` however Snakemake was started, and the conda env
file builds a working environment wherever Snakemake copies it (issue 16, parts 0-1)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import venv
from pathlib import Path

from conftest import ROOT, copy_repo, run

VENV_BIN = Path(sys.executable).parent  # the venv the tests run in (.venv/bin in CI)
BARE_PATH = os.pathsep.join(
    d for d in ("/usr/local/bin", "/usr/bin", "/bin") if not (Path(d) / "inrroute").exists()
)


def test_rule_finds_inrroute_without_venv_on_path(tmp_path):
    """`.venv/bin/snakemake ...` with a PATH that lacks .venv/bin runs a rule's `inrroute`."""
    snakemake = VENV_BIN / "snakemake"
    assert snakemake.exists(), snakemake
    assert shutil.which("inrroute", path=BARE_PATH) is None, BARE_PATH
    wd = copy_repo(tmp_path / "repo")
    env = {**os.environ, "PATH": BARE_PATH}
    env.pop("VIRTUAL_ENV", None)
    r = run(
        [str(snakemake), "stage_all", "--configfile=config/smoke.yaml", "--cores", "1"],
        wd,
        600,
        env=env,
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "inrroute: not found" not in log
    assert (wd / "results" / "smoke" / "data" / "digits.nc").stat().st_size > 0


# ---------------------------------------------------------------- conda env, pip only


def site_packages(prefix: Path) -> Path:
    return next(prefix.glob("lib/python3*/site-packages"))


def test_conda_env_works_from_snakemakes_copy(tmp_path):
    """envs/inrroute.yaml + its post-deploy script, deployed as Snakemake does it.

    Snakemake copies the env file to .snakemake/conda/<hash>.yaml in the working
    directory, creates the env at .snakemake/conda/<hash>, copies the post-deploy script
    to <hash>.post-deploy.sh and runs it inside the env. Conda channels are not reachable
    here, so the env is a venv: conda's part of the file (python, pip) is what a venv has,
    and the test venv's site-packages are made visible (a .pth file) so torch is not
    installed again; the post-deploy script must then install inrroute and pass.
    """
    import yaml

    spec = yaml.safe_load((ROOT / "envs" / "inrroute.yaml").read_text())
    conda_deps = [d for d in spec["dependencies"] if isinstance(d, str)]
    assert sorted(d.split("=")[0] for d in conda_deps) == ["pip", "python"], conda_deps
    assert not [d for d in spec["dependencies"] if isinstance(d, dict)], "pip: section"

    repo = copy_repo(tmp_path / "repo")  # the workflow, e.g. on a shared filesystem
    work = tmp_path / "work"  # snakemake -d: the working directory, elsewhere
    conda = work / ".snakemake" / "conda"
    conda.mkdir(parents=True)
    env_hash = hashlib.md5(b"any").hexdigest()
    shutil.copy(repo / "envs" / "inrroute.yaml", conda / f"{env_hash}.yaml")
    deploy = conda / f"{env_hash}.post-deploy.sh"
    shutil.copy(repo / "envs" / "inrroute.post-deploy.sh", deploy)
    prefix = conda / env_hash
    venv.EnvBuilder(with_pip=True).create(prefix)
    (site_packages(prefix) / "_parent.pth").write_text(f"{site_packages(Path(sys.prefix))}\n")

    env = {**os.environ, "PATH": f"{prefix / 'bin'}{os.pathsep}{BARE_PATH}"}
    for var in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(var, None)
    env["INRROUTE_WORKFLOW_DIR"] = str(repo)  # what the Snakefile exports
    first = deploy.read_text().splitlines()[0]
    interpreter = first[2:].split() if first.startswith("#!") else ["sh"]
    r = run([*interpreter, str(deploy)], work, 900, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run([str(prefix / "bin" / "inrroute"), "--help"], elsewhere, 300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "meta-train" in r.stdout
    code = "import inrroute; print(inrroute.__file__)"
    r = run([str(prefix / "bin" / "python"), "-c", code], elsewhere, 300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert Path(r.stdout.strip()).is_relative_to(repo / "src"), r.stdout


def test_post_deploy_script_tracks_the_lock():
    """The env's hash covers the lock, so a new lock rebuilds conda envs (scripts/lock.sh)."""
    lock = ROOT / "envs" / "requirements.lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    script = (ROOT / "envs" / "inrroute.post-deploy.sh").read_text()
    assert f"# requirements.lock sha256: {digest}" in script, "run bash scripts/lock.sh"
    pins = [ln for ln in lock.read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==\S+", p) for p in pins), pins
    names = {p.split("==")[0].lower() for p in pins}
    assert "inrroute" not in names
    assert {"torch", "torchvision", "snakemake", "numpy"} <= names
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "--constraint envs/requirements.lock" in install
