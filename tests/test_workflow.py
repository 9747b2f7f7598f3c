"""The workflow: dry-runs of every config, and the smoke study end to end."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import ROOT, SNAKEMAKE, run
from inrroute.study import POOLED


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_dry_run(config, tmp_path):
    res = run(
        SNAKEMAKE
        + ["-n", "--configfile", f"config/{config}", "--config", f"results_dir={tmp_path}"],
        ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "meta_train" in res.stdout


def job_outputs(dry_run: str, rule: str) -> list[list[str]]:
    """The output files of every job of ``rule`` in a dry-run's listing."""
    jobs, current = [], None
    for line in dry_run.splitlines():
        # Jobs of a group (the workflow profile's groups) are listed indented.
        if line.lstrip().startswith(("rule ", "localrule ")):
            current = line.split()[1].rstrip(":")
        elif current == rule and line.strip().startswith("output:"):
            jobs.append([p.strip(",") for p in line.split()[1:]])
    return jobs


@pytest.mark.parametrize(("batch_runs", "jobs"), [("dataset", 1), ("combination", 16)])
def test_default_study_dag_has_every_run(batch_runs, jobs, tmp_path):
    res = run(
        SNAKEMAKE + ["-n", "--config", f"results_dir={tmp_path}", f"batch_runs={batch_runs}"],
        ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    # One meta-training per run (16 combinations x 3 seeds) ...
    assert len(job_outputs(res.stdout, "meta_train")) == 48
    # ... and each later stage batched: one job per dataset or per combination, every run
    # file made by exactly one job.
    for rule, name in (("interventions", "interventions.nc"), ("fit", "fitted.nc")):
        outputs = job_outputs(res.stdout, rule)
        assert len(outputs) == jobs
        files = [p for job in outputs for p in job]
        assert len(files) == len(set(files)) == 48
        assert all(p.endswith(f"/{name}") for p in files)


@pytest.mark.slow
def test_smoke_outputs(smoke):
    results = smoke / "results" / "smoke"
    run_dir = results / "digits" / "seed0" / "cluster0_route0_biasroute0_densefit0"
    for name in (
        "model.pt",
        "train_log.csv",
        "fitted.nc",
        "reader.nc",
        "geometry.nc",
        "fresh_reader.nc",
        "tokenflow.nc",
        "interventions.nc",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    fitted = xr.open_dataset(run_dir / "fitted.nc")
    assert fitted["phi"].dims == ("sample", "layer", "neuron", "feature")
    assert fitted["phi"].shape[1:] == (1, 8, 9)  # depth 1, width 8, width + 1 features
    assert (fitted["split"].values == "test").sum() == 100
    for fig in (
        "tokenflow",
        "interventions",
        "interactions",
        "geometry_vs_accuracy",
        "reconstructions_digits",
    ):
        assert (results / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "FINDINGS.md").read_text().startswith("# Findings")
    assert not list(results.rglob("*.tmp")), "a temporary file was left behind"


@pytest.mark.slow
def test_smoke_summary_grid_is_filled(smoke):
    ds = xr.open_dataset(smoke / "results" / "smoke" / "summary.nc")
    assert list(ds["seed"].values) == [0, 1]
    ran = ds["ran"].values
    assert ran.sum() == 4  # 2 seeds x 2 combinations
    for name, var in ds.data_vars.items():
        if name == "ran":
            continue
        values = var.values[ran]
        assert np.isfinite(values).all(), f"{name} has a missing value in a run cell"
        if name.endswith("accuracy") or name == "knn_consistency":
            assert ((values >= 0) & (values <= 1)).all(), name
    assert ds["reader_accuracy"].attrs["units"] == "1"


@pytest.mark.slow
def test_smoke_report(smoke):
    res = run(SNAKEMAKE + ["--configfile", "config/smoke.yaml", "--report", "report.html"], smoke)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (smoke / "report.html").read_text(errors="replace")
    assert "tokenflow.png" in html and "FINDINGS.md" in html


@pytest.mark.slow
def test_docs_figures_copies_a_studys_headline_results(smoke, tmp_path):
    """scripts/docs_figures.sh, the README's command for docs/, on a finished study."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(smoke, repo, ignore=shutil.ignore_patterns(".snakemake", "logs"))
    res = run(["bash", "scripts/docs_figures.sh", "results/smoke"], repo)
    assert res.returncode == 0, res.stderr
    for name in ("tokenflow.png", "interventions.png", "reader_families.png"):
        assert (repo / "docs" / name).read_bytes()[:4] == b"\x89PNG"
    assert (repo / "docs" / "FINDINGS.md").read_text() == (
        repo / "results" / "smoke" / "FINDINGS.md"
    ).read_text()
    # with a prefix, as the README's fashion command: docs/fashion_*.png beside the others
    res = run(["bash", "scripts/docs_figures.sh", "results/smoke", "fashion_"], repo)
    assert res.returncode == 0, res.stderr
    assert (repo / "docs" / "fashion_tokenflow.png").read_bytes()[:4] == b"\x89PNG"
    assert (repo / "docs" / "fashion_FINDINGS.md").is_file()


def test_pool_script_answers_two_studies_per_dataset_and_pooled(tmp_path):
    """scripts/pool.sh, the README's command for pooling finished studies: two studies'
    summary.nc (one dataset each, different recipes) -> one analysis with per-dataset and
    pooled verdicts, figures and a FINDINGS.md that names each study's own settings."""
    from inrroute import provenance as prov
    from inrroute.io import write_netcdf
    from synthetic import make_summary

    both = make_summary(
        datasets=("digits", "fashion_mnist"), seeds=(0, 1, 2), families=("transformer", "mlp")
    )
    for name, epochs in (("digits", 6), ("fashion_mnist", 5)):
        part = both.sel(dataset=[name])
        part.attrs = prov.netcdf_attrs({"training.epochs": epochs}, "aggregate")
        (tmp_path / name).mkdir()
        write_netcdf(part, tmp_path / name / "summary.nc")
    out = tmp_path / "pooled"
    res = run(
        ["bash", "scripts/pool.sh", tmp_path / "digits", tmp_path / "fashion_mnist", out], ROOT
    )
    assert res.returncode == 0, res.stderr
    verdicts = pd.read_csv(out / "stats" / "verdicts.csv")
    assert set(verdicts["dataset"]) == {"digits", "fashion_mnist", POOLED}
    text = (out / "FINDINGS.md").read_text()
    assert "Pooled from separate studies" in text and "`training.epochs` = `5`" in text
    assert (out / "figures" / "tokenflow.png").read_bytes()[:4] == b"\x89PNG"
    bad = run(["bash", "scripts/pool.sh", tmp_path / "digits", out], ROOT)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.slow
def test_fashion_study_config_runs_with_tiny_caps(tmp_path):
    """config/fashion_study.yaml end to end at tiny caps (the full study is not in CI), so
    that it cannot rot: its model, data and every stage on real 28 x 28 images."""
    from conftest import copy_repo
    from inrroute.data import DEBIAN_FASHION_MNIST

    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    work = copy_repo(tmp_path / "repo")
    (work / "tiny.yaml").write_text(
        "seeds: [0, 1]\n"
        "combinations: [cluster0_route0_biasroute0_densefit0, cluster1_route1_biasroute1_densefit1]\n"
        "caps: {fashion_mnist: {train: 120, test: 60}}\n"
        "training: {epochs: 1, checkpoint_every: 5}\n"
        "probes: {knn_k: 5, intervention_draws: 2, fresh_reader_epochs: 1}\n"
        "stats: {bootstrap: 50}\n"
    )
    config = ["--configfile", "config/fashion_study.yaml", "tiny.yaml"]
    res = run(SNAKEMAKE + ["--profile", "profiles/local", *config, "--cores", "2"], work)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    results = work / "results" / "fashion_study"
    ds = xr.open_dataset(results / "summary.nc")
    assert list(ds["dataset"].values) == ["fashion_mnist"]
    assert int(ds["reader_accuracy"].notnull().sum()) == 4  # 2 seeds x 2 combinations
    assert "fashion_mnist" in (results / "FINDINGS.md").read_text()
