"""The profiles: workflow profile (profiles/default) + site profile, as Snakemake reads them.

profiles/default holds what the workflow needs per rule (resources, GPUs, groups) and
Snakemake layers it over any site profile (profiles/slurm, profiles/slurm-ci, a user's
own), which holds executor, account and partitions. No Slurm needed: the sbatch lines
are rendered with the Slurm plugin's own functions from Snakemake's dry-run of
config/paper.yaml, and compared with those of the single profile used before the split
(tests/slurm/reference/slurm-before-split, frozen).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run
from inrroute.study import GPU_RULES

yte = pytest.importorskip("yte")  # Snakemake renders profiles with YTE
slurm_plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
from snakemake_executor_plugin_slurm.partitions import (
    get_best_partition,
    read_partition_file,
)
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).resolve().parent / "reference" / "slurm-before-split"
VENV_BIN = Path(sys.executable).parent
GROUPED_RULES = {"geometry", "aggregate", "stats", "figures"}
# The keys the workflow profile may set: Snakemake merges profiles per top-level key with
# the workflow profile last, so any other key here would silently override the site's.
WORKFLOW_KEYS = {"set-threads", "set-resources", "groups", "group-components"}
# Top-level keys allowed to differ between the two shipped site profiles.
CI_ONLY = {"slurm-status-command", "slurm-init-seconds-before-status-checks"}
SITE_ONLY = {"slurm-partition-config", "slurm-efficiency-report"}
# What the cost model (inrroute.plan) now sets and the frozen reference fixed per rule.
PLANNED = re.compile(r"(--mem |-t |--cpus-per-task=)\S+")

# A user's own site profile, as found on many clusters: executor (and how many jobs at
# once, which Snakemake requires with it), account, partitions, and the width of one
# grouped job. Nothing of this workflow.
USER_PROFILE = """\
executor: slurm
jobs: 100
cores: 8
default-resources:
  slurm_account: CHANGE_ME
slurm-partition-config: partitions.yaml
"""
USER_PARTITIONS = """\
partitions:
  cpu: {max_gpu: 0}
  gpu: {max_gpu: 2}
"""


def render(path: Path) -> dict:
    with open(path / "config.yaml") as f:
        # require_use_yte: exactly how snakemake.profiles.ProfileConfigFileParser loads it
        return yte.process_yaml(f, require_use_yte=True)


@pytest.fixture(scope="module")
def workflow():
    return render(ROOT / "profiles" / "default")


@pytest.fixture(scope="module")
def site():
    return render(ROOT / "profiles" / "slurm")


@pytest.fixture(scope="module")
def ci():
    return render(ROOT / "profiles" / "slurm-ci")


def test_workflow_profile_holds_only_per_rule_settings(workflow):
    assert set(workflow) == WORKFLOW_KEYS
    for rule, res in workflow["set-resources"].items():
        assert not {"slurm_partition", "slurm_account"} & set(res), rule  # the site's
        assert "slurm_extra" not in res, rule
        # memory and time come from the cost model through the rules, not from here
        assert not {"mem_mb", "runtime"} & set(res), rule
        assert res["cpus_per_task"] == "threads", rule  # CPUs booked = threads torch runs
    assert GROUPED_RULES <= set(workflow["groups"])
    assert set(workflow["set-threads"]) == set(GPU_RULES)


def test_gpu_rules_are_the_studys(workflow):
    """Exactly inrroute.study.GPU_RULES ask for a GPU, with the plugin's `gpu` resource."""
    wanting = {rule for rule, res in workflow["set-resources"].items() if "gpu" in res}
    assert wanting == set(GPU_RULES)
    for rule in GPU_RULES:
        assert workflow["set-resources"][rule]["gpu"] == 1, rule  # -> sbatch --gpus=1


@pytest.mark.parametrize("name", ["slurm", "slurm-ci"])
def test_site_profiles_hold_only_the_site(name):
    prof = render(ROOT / "profiles" / name)
    assert not WORKFLOW_KEYS & set(prof), "per-rule settings belong in profiles/default"
    assert prof["executor"] == "slurm"
    assert prof["retries"] >= 1
    assert prof["slurm-logdir"] == "logs/slurm"
    assert set(prof["default-resources"]) <= {"slurm_account", "slurm_partition"}


def test_site_profiles_agree(site, ci):
    assert set(site) - CI_ONLY - SITE_ONLY == set(ci) - CI_ONLY - SITE_ONLY
    assert "slurm_partition" not in site["default-resources"]  # chosen per job instead
    partitions = read_partition_file(ROOT / "profiles" / "slurm" / site["slurm-partition-config"])
    assert {p.limits.max_gpu > 0 for p in partitions} == {True, False}


def test_ci_targets_test_cluster(ci):
    assert ci["slurm-status-command"] == "squeue"  # no accounting: sacct would hang
    assert ci["default-resources"] == {"slurm_partition": "main"}


# ------------------------------------------------------------------ rendered sbatch lines


class _Resources(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Job:
    """What the plugin's submit-string functions read of a job."""

    def __init__(self, rule: str, resources: dict):
        self.name = rule
        self.resources = _Resources(resources)
        self.threads = 1  # only used where cpus_per_task is missing; dry-runs hide threads


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def local_rules() -> set[str]:
    """Rules that never become Slurm jobs: those named in a `localrules:` directive, and
    `all`, which has no action (Snakemake finishes such jobs itself)."""
    names = {"all"}
    for smk in [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]:
        for block in re.findall(
            r"^localrules:\n((?:[ \t]+\w+,?\n)+)", smk.read_text(), re.MULTILINE
        ):
            names |= set(re.findall(r"\w+", block))
    return names


def dry_run_jobs(args: list[str], cwd: Path, env: dict) -> dict[tuple[str, str], dict]:
    """(rule, wildcards) -> evaluated resources of every cluster job of a dry-run."""
    r = run([str(VENV_BIN / "snakemake"), "-n", *args], cwd, 600, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    jobs, rule, wildcards = {}, None, ""
    for line in r.stdout.splitlines():
        s = line.strip()
        if m := re.fullmatch(r"(local)?rule (\w+):", s):
            rule = None if m.group(1) or m.group(2) in local_rules() else m.group(2)
            wildcards = ""
        elif rule and s.startswith("wildcards: "):
            wildcards = s.removeprefix("wildcards: ")
        elif rule and s.startswith("resources: "):
            res = dict(kv.split("=", 1) for kv in s.removeprefix("resources: ").split(", "))
            key = (rule, wildcards)
            assert key not in jobs, key
            jobs[key] = {k: _value(v) for k, v in res.items()}
    return jobs


def sbatch_line(rule: str, resources: dict, partitions) -> str:
    """The plugin's sbatch call for a job, up to the parts no profile changes (log file,
    job name, comment and working directory are fixed here)."""
    job = _Job(rule, resources)
    partition = resources.get("slurm_partition")
    if not partition and partitions:
        partition = get_best_partition(partitions, job, logging.getLogger("plugin"))
    account = resources.get("slurm_account")
    params = {
        "run_uuid": "RUN",
        "slurm_logfile": "LOG",
        "comment_str": f"rule_{rule}",
        "account": f" -A {shlex.quote(account)}" if account else "",
        "partition": f" -p {shlex.quote(str(partition))}" if partition else "",
        "workdir": "WD",
    }
    return get_submit_command(job, params) + set_gres_string(job)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the working tree (dry-runs write results/*/resolved_config.yaml)."""
    dst = tmp_path_factory.mktemp("profiles") / "repo"
    skip = (".venv", "results", "logs", ".snakemake", ".git", "data", "__pycache__")
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(*skip, ".*_cache"))
    return dst


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A HOME with the user's own site profile as `mysite`, and the shipped one as `slurm`."""
    home = tmp_path_factory.mktemp("home")
    profiles = home / ".config" / "snakemake"
    shutil.copytree(ROOT / "profiles" / "slurm", profiles / "slurm")
    prof = profiles / "mysite"
    prof.mkdir(parents=True)
    (prof / "config.yaml").write_text(USER_PROFILE)
    (prof / "partitions.yaml").write_text(USER_PARTITIONS)
    return home


def user_env(home: Path) -> dict:
    env = {**os.environ, "HOME": str(home), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("SNAKEMAKE_PROFILE", None)
    return env


def rendered(jobs: dict, partitions) -> dict:
    return {key: sbatch_line(key[0], res, partitions) for key, res in jobs.items()}


@pytest.mark.parametrize("profile", ["mysite", "slurm"])
def test_site_profile_plus_workflow_profile_renders_the_same_sbatch_lines(repo, home, profile):
    """A user's minimal site profile, or the shipped one, + profiles/default = before."""
    env = user_env(home)
    paper = ["--configfile", "config/paper.yaml"]
    before = dry_run_jobs(
        ["--profile", str(REFERENCE), "--workflow-profile", "none", *paper], repo, env
    )
    after = dry_run_jobs(["--profile", profile, *paper], repo, env)
    assert before.keys() == after.keys()
    rules = {rule for rule, _ in before}
    assert set(GPU_RULES) | GROUPED_RULES <= rules
    partitions = read_partition_file(home / ".config" / "snakemake" / profile / "partitions.yaml")
    old, new = rendered(before, None), rendered(after, partitions)
    # memory, time and CPUs now come from the plan and set-threads (tested below)
    old = {k: PLANNED.sub(r"\1N", v) for k, v in old.items()}
    masked = {k: PLANNED.sub(r"\1N", v) for k, v in new.items()}
    differ = {k: (old[k], masked[k]) for k in old if old[k] != masked[k]}
    shown = list(differ.items())[:4]
    assert not differ, "\n".join(f"{k}:\n  before {a}\n  after  {b}" for k, (a, b) in shown)
    # The lines say what they should: GPU jobs on the GPU partition with one GPU.
    for (rule, _), line in new.items():
        gpu = rule in GPU_RULES
        assert (" -p gpu " in line, "--gpus=1" in line) == (gpu, gpu), line
        assert " -A CHANGE_ME " in line and "-t " in line and "--mem " in line, line


def test_group_and_retry_settings_unchanged(home, workflow):
    """What shapes the group jobs' and the retries' lines: the same as before the split."""
    from snakemake.cli import parse_args

    ref = render(REFERENCE)
    assert workflow["groups"] == ref["groups"]
    assert workflow["group-components"] == ref["group-components"]
    # Every rule's GPU as before; the CPUs it booked before are now its threads.
    for rule, res in ref["set-resources"].items():
        expected = {k: v for k, v in res.items() if k in ("gpu",)}
        got = {k: v for k, v in workflow["set-resources"][rule].items() if k in ("gpu",)}
        assert got == expected, rule
        if isinstance(res.get("cpus_per_task"), int):
            assert workflow["set-threads"][rule] == res["cpus_per_task"], rule
    cwd = os.getcwd()
    old_home = os.environ.get("HOME")
    try:
        os.chdir(ROOT)
        os.environ["HOME"] = str(home)
        _, merged = parse_args(["-n", "--profile", "mysite"])
    finally:
        os.chdir(cwd)
        if old_home is not None:
            os.environ["HOME"] = old_home
    assert merged.cores == ref["cores"]
    assert merged.groups == ref["groups"]
    assert {k: int(v) for k, v in merged.group_components.items()} == ref["group-components"]


def test_snakemake_profile_slurm_as_typed(repo, tmp_path):
    """`bash scripts/install-profile.sh`, then exactly `snakemake --profile slurm -n ...`."""
    env = user_env(tmp_path)
    r = run(["bash", "scripts/install-profile.sh"], repo, 600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / ".config" / "snakemake" / "slurm" / "partitions.yaml").exists(), r.stdout
    r = run(["bash", "-c", "snakemake --profile slurm -n --configfile config/paper.yaml"],
            repo, 600, env=env)  # fmt: skip
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in log, log[:2000]
    assert re.search(r"meta_train\s+240\b", r.stdout), r.stdout[:3000]


@pytest.mark.parametrize("config", ["config/paper.yaml", "config/rehearsal.yaml"])
def test_no_attempt_asks_above_the_site_caps(site, config):
    """mem_mb and runtime from the plan grow with each retry but stay within the site
    profile's MAX_MEM_MB and MAX_RUNTIME (passed as config values)."""
    from inrroute import plan
    from inrroute.config import from_mapping

    raw = yaml.safe_load((ROOT / config).read_text())
    cfg = from_mapping({**raw, **site["config"]})
    assert cfg.max_runtime == site["config"]["max_runtime"] > 0
    rules = [r.rule for r in plan.plan(cfg)]
    for rule in rules:
        for dataset in cfg.datasets:
            asks = [plan.request(cfg, rule, attempt, dataset) for attempt in (1, 2, 3, 4)]
            assert asks[0][0] <= asks[1][0] and asks[0][1] <= asks[1][1], (rule, asks)
            for mem, minutes in asks:
                assert 0 < mem <= cfg.max_mem_mb and 0 < minutes <= cfg.max_runtime, rule
    if config == "config/paper.yaml":  # without caps its retries would grow past them
        free = from_mapping(raw)
        assert plan.request(free, "meta_train", 5, cfg.datasets[0])[1] > cfg.max_runtime
        assert plan.request(free, "geometry", 6, cfg.datasets[0])[0] > cfg.max_mem_mb
