"""Every shell command in README.md is exercised as written, so none can drift.

The commands are read from the README itself: each line of a ```bash block and each
inline `code` span that starts with a command. CHECKS says, for every one of them, how it
is exercised:

- RUN: run as written in a copy of the repository, whose .venv is the venv the tests run
  in, with HOME a fresh folder;
- DRY: run as written plus ``-n`` (it would start a study);
- HELP: a command (or `a / b` alternatives of one) of the CLI; ``--help`` of each runs;
- FILL: run with its placeholders filled in (the filled command is given);
- STUB: a script that first runs scripts/install.sh; run as written plus the given
  arguments, with install.sh a no-op in the copy (it would re-install the tests' venv);
- COVERED: not runnable here (a cluster, root, conda); the named test runs it.

A command in the README without an entry here, or an entry no longer in the README,
fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_repo, run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PREFIXES = ("bash ", ".venv/bin/", "snakemake ", "sbatch ", "mkdir ", "python ", "inrroute ")

RUN, DRY, HELP = "run", "dry-run", "help"


def FILL(command: str) -> tuple[str, str]:
    return ("fill", command)


def STUB(extra: str) -> tuple[str, str]:
    return ("stub-install", extra)


def COVERED(test: str) -> tuple[str, str]:
    return ("covered", test)


CHECKS: dict[str, object] = {
    # The two commands
    "bash scripts/study.sh": STUB("-n"),
    "bash scripts/test.sh": COVERED(".ci/run"),  # the CI's last step; the suite itself
    "bash scripts/study.sh --configfile config/smoke.yaml": STUB("-n"),
    # Configs, Stages
    "inrroute check-config --config FILE": FILL("inrroute check-config --config config/smoke.yaml"),
    "inrroute <stage> --help": HELP,
    "inrroute stage": HELP,
    "inrroute meta-train": HELP,
    "inrroute fit": HELP,
    "inrroute read / geometry / fresh-reader / tokenflow / interventions": HELP,
    "inrroute aggregate": HELP,
    "python scripts/refusal_table.py --write": RUN,
    "bash scripts/docs_figures.sh": COVERED(
        "tests/test_workflow.py::test_docs_figures_copies_a_studys_headline_results"
    ),
    "bash scripts/study.sh --configfile config/fashion_study.yaml": STUB("-n"),
    "bash scripts/docs_figures.sh results/fashion_study fashion_": COVERED(
        "tests/test_workflow.py::test_docs_figures_copies_a_studys_headline_results"
    ),
    "bash scripts/study.sh --configfile config/fashion_study.yaml config/two_datasets.yaml": STUB(
        "-n"
    ),
    "bash scripts/pool.sh results results/fashion_study results/pooled": COVERED(
        "tests/test_workflow.py::test_pool_script_answers_two_studies_per_dataset_and_pooled"
    ),
    "inrroute pool": HELP,
    "inrroute provenance FILE": COVERED(
        "tests/test_provenance.py::test_every_output_says_what_made_it"
    ),
    "inrroute aggregate / stats": HELP,
    "inrroute figures / reconstructions / findings": HELP,
    "inrroute read --model a/model.pt b/model.pt --fitted a/fitted.nc b/fitted.nc --out "
    "a/reader.nc b/reader.nc": COVERED(
        "tests/test_cli_runs.py::test_stage_of_two_runs_equals_each_run_alone"
    ),
    # Running on a Slurm cluster
    "bash scripts/install.sh": COVERED(".ci/run"),  # would re-install the tests' venv
    ".venv/bin/snakemake --sdm conda --conda-create-envs-only --configfile=config/paper.yaml": (
        COVERED("tests/test_deployment.py::test_conda_env_works_from_snakemakes_copy")
    ),  # needs conda and its channels; the test builds the env as Snakemake does, pip only
    ".venv/bin/snakemake": DRY,  # "started as `.venv/bin/snakemake`": the default study
    "bash scripts/install-profile.sh": RUN,
    ".venv/bin/snakemake stage_all --configfile config/paper.yaml --cores 1": DRY,
    ".venv/bin/snakemake --profile slurm --configfile config/paper.yaml -n": RUN,
    ".venv/bin/snakemake --profile slurm --configfile config/paper.yaml": DRY,
    "mkdir -p logs/slurm && sbatch workflow/submit.sbatch --configfile config/paper.yaml": (
        COVERED("tests/slurm/test_workflow_on_slurm.py::test_controller_as_batch_job")
    ),
    "inrroute plan --config FILE": FILL("inrroute plan --config config/paper.yaml"),
    "bash scripts/lock.sh": RUN,
    "bash tests/slurm/up.sh": COVERED(".ci/run"),  # root, daemons; the CI brings Slurm up
    # Catalog files
    ".venv/bin/python scripts/config_readme.py > config/README.md": RUN,
    # Developing
    'bash scripts/test.sh -m "not slow"': STUB("--collect-only -q"),
    "bash scripts/test.sh tests/slurm": STUB("--collect-only -q"),
    ".venv/bin/ruff format src tests benchmarks": RUN,
    ".venv/bin/snakefmt Snakefile workflow": RUN,
    ".venv/bin/snakemake --lint": RUN,
}


def readme_commands() -> list[str]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if span.startswith(PREFIXES):
            commands.append(span)
    return list(dict.fromkeys(commands))


def test_every_readme_command_has_a_check():
    found = readme_commands()
    missing = [c for c in found if c not in CHECKS]
    stale = [c for c in CHECKS if c not in found]
    assert not missing, f"README commands without a check in CHECKS: {missing}"
    assert not stale, f"CHECKS entries no longer in the README: {stale}"


def test_covering_tests_exist():
    for command, check in CHECKS.items():
        if isinstance(check, tuple) and check[0] == "covered":
            path, _, name = check[1].partition("::")
            text = (ROOT / path).read_text()
            assert not name or re.search(rf"^def {name}\(", text, re.MULTILINE), (command, check)
            if path == ".ci/run":
                assert command.split()[1] in text or command == "bash scripts/install.sh"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the working tree; its .venv is the tests' venv; HOME is empty."""
    base = tmp_path_factory.mktemp("readme")
    dst = copy_repo(base / "repo")
    (dst / ".venv").symlink_to(Path(sys.prefix))
    (base / "home").mkdir()
    return dst


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "HOME": str(cwd.parent / "home"),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",  # an activated venv
    }
    env.pop("XDG_CONFIG_HOME", None)
    return run(["bash", "-c", command], cwd, 900, env=env)


def runnable(command: str, check) -> list[str]:
    """The command lines that exercise a README command."""
    if check == RUN:
        return [command]
    if check == DRY:
        return [f"{command} -n"]
    if check == HELP:
        names = command.removeprefix("inrroute ").split(" / ")
        if names == ["<stage> --help"]:
            names = [
                n
                for c, k in CHECKS.items()
                if k == HELP and "<" not in c
                for n in c.removeprefix("inrroute ").split(" / ")
            ]
        return [f"inrroute {name} --help" for name in names]
    kind, arg = check
    if kind == "fill":
        return [arg]
    if kind == "stub-install":
        return [f"{command} {arg}"]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("command", list(CHECKS))
def test_readme_command_runs(command, repo):
    check = CHECKS[command]
    lines = runnable(command, check)
    if not lines:
        pytest.skip(f"covered by {check[1]}")
    if isinstance(check, tuple) and check[0] == "stub-install":
        (repo / "scripts" / "install.sh").write_text("#!/usr/bin/env bash\ntrue\n")
    if "--profile slurm" in command and not (repo.parent / "home/.config/snakemake/slurm").is_dir():
        assert shell("bash scripts/install-profile.sh", repo).returncode == 0  # step 2
    for line in lines:
        r = shell(line, repo)
        assert r.returncode == 0, f"{line}\n{(r.stdout + r.stderr)[-4000:]}"
