"""Results match the config that claims them (issue 12): reruns follow the config values a
rule uses, a dry run writes nothing, every output says what made it, and run outputs made
from different configs are never mixed. All on the real smoke study."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml

from conftest import SNAKEMAKE, run
from inrroute import provenance as prov
from inrroute.study import RUN_STAGES

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (ns)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def dry_run(repo: Path, changes: dict) -> dict[str, list[str]]:
    """`snakemake -n` of the smoke study with ``changes`` laid over it: rule -> reasons."""
    extra = repo / "changes.yaml"
    extra.write_text(yaml.safe_dump(changes))
    res = run(
        SNAKEMAKE + ["-n", "--configfile", "config/smoke.yaml", str(extra)],
        repo,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in res.stdout.splitlines():
        if line.strip().startswith(("rule ", "localrule ")):  # group jobs are indented
            rule = line.split()[1].rstrip(":")
        elif rule and line.strip().startswith("reason:"):
            jobs.setdefault(rule, []).append(line.strip())
    return jobs


DOWNSTREAM = {"aggregate", "stats", "figures", "findings", "all"}


@pytest.mark.parametrize(
    ("changes", "changed", "rerun"),
    [
        # knn_k: the stages that use it (the fresh readers' token flow too), and what
        # depends on them; nothing else.
        ({"probes": {"knn_k": 3}}, {"geometry", "tokenflow", "fresh_reader"}, DOWNSTREAM),
        # training.lr: from meta-training on (Snakemake names only the first reason, so the
        # fresh reader, which uses it too, shows its updated inputs).
        (
            {"training": {"lr": 0.002}},
            {"meta_train"},
            {"fit", "reconstructions", *(s.rule for s in RUN_STAGES), *DOWNSTREAM},
        ),
        # stats.bootstrap: only the statistics and what follows them.
        ({"stats": {"bootstrap": 60}}, {"stats"}, DOWNSTREAM - {"aggregate"}),
    ],
    ids=["probes.knn_k", "training.lr", "stats.bootstrap"],
)
def test_reruns_follow_the_config(smoke, changes, changed, rerun):
    results = smoke / "results" / "smoke"
    before = tree(results)
    jobs = dry_run(smoke, changes)
    assert set(jobs) == changed | rerun
    for rule in changed:
        assert any("Params have changed" in r for r in jobs[rule]), (rule, jobs[rule])
    assert tree(results) == before, "the dry run wrote under results_dir"


def test_unchanged_config_has_nothing_to_do(smoke):
    assert dry_run(smoke, {}) == {}


def test_dry_run_of_a_new_study_writes_nothing(smoke, tmp_path):
    results = tmp_path / "fresh"
    res = run(
        SNAKEMAKE
        + ["-n", "--configfile", "config/smoke.yaml", "--config", f"results_dir={results}"],
        smoke,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "meta_train" in res.stdout
    assert not results.exists()


def test_every_output_says_what_made_it(smoke):
    results = smoke / "results" / "smoke"
    summary = xr.open_dataset(results / "summary.nc")
    record = prov.of_attrs(summary.attrs)
    assert record["probes.knn_k"] == 5 and record["training.epochs"] == 2  # config/smoke.yaml
    assert summary.attrs[prov.HASH_ATTR] == prov.digest(record)
    commit = summary.attrs["inrroute_git_commit"]
    assert commit == "not a git checkout"  # the copy has no .git
    versions = json.loads(summary.attrs["inrroute_versions_json"])
    assert {
        "torch",
        "snakemake",
        "snakemake-executor-plugin-slurm",
        "statsmodels",
        "xarray",
    } <= set(versions)
    assert summary.attrs["inrroute_device"] == "cpu"
    assert "meta_train" in json.loads(summary.attrs["inrroute_wall_seconds_json"])
    run_dir = next((results / "digits" / "seed0").iterdir())
    for stage in RUN_STAGES:
        attrs = xr.open_dataset(run_dir / stage.output).attrs
        assert attrs[prov.RULE_ATTR] == stage.rule
        assert prov.of_attrs(attrs)["training.lr"] == 0.003  # chained from meta-training
    findings = (results / "FINDINGS.md").read_text()
    assert summary.attrs[prov.HASH_ATTR] in findings and "not a git checkout" in findings
    for path in (run_dir / "model.pt", results / "stats" / "anova.csv", results / "summary.nc"):
        res = run([str(BIN / "inrroute"), "provenance", str(path)], smoke)
        assert res.returncode == 0, res.stderr
        printed = json.loads(res.stdout)
        assert printed[prov.CONFIG_ATTR]["model"]["width"] == 8, path


def test_aggregate_refuses_outputs_of_different_configs(smoke, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(smoke / "results" / "smoke", results)
    config = tmp_path / "config.yaml"
    raw = yaml.safe_load((smoke / "config" / "smoke.yaml").read_text())
    config.write_text(yaml.safe_dump({**raw, "results_dir": str(results)}))
    # One run's geometry as if made with another knn_k.
    path = next((results / "digits" / "seed1").iterdir()) / "geometry.nc"
    with xr.open_dataset(path) as opened:
        ds = opened.load()
    record = {**prov.of_attrs(ds.attrs), "probes.knn_k": 7}
    ds.attrs.update(prov.netcdf_attrs(record, "geometry"))
    ds.to_netcdf(path)
    res = run([str(BIN / "inrroute"), "aggregate", "--config", str(config), "--out",
               str(tmp_path / "summary.nc")], smoke)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "probes.knn_k" in res.stderr and str(path) in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "summary.nc").exists()
