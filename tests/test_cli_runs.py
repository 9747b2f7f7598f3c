"""Per-run stages over several runs in one process (one job per combination, all seeds).

``inrroute fit|read|geometry|fresh-reader|tokenflow|interventions`` pair their --model,
--fitted and --out lists by position; every run's file must be exactly what a call for
that run alone writes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from inrroute import cli
from inrroute.config import Combination, load_config
from inrroute.data import split_of, stage
from inrroute.io import read_netcdf, write_netcdf
from inrroute.study import RUN_STAGES
from inrroute.training import meta_train
from tiny import write_config

COMBO = "cluster0_route1_biasroute1_densefit0"
STAGES = {s.command: (s.needs_model, s.output) for s in RUN_STAGES}  # every per-run stage


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two trained runs (seeds 0 and 1) of a tiny digits study, fitted by one `fit` call."""
    root = tmp_path_factory.mktemp("runs")
    config = write_config(root / "config.yaml", root / "results", combinations=[COMBO],
                          training={"epochs": 1, "batch_size": 16})  # fmt: skip
    data = root / "digits.nc"
    write_netcdf(stage("digits", root / "raw", 200, 100, seed=0), data)
    cfg = load_config(config)
    torch.set_num_threads(1)
    folders = [root / f"seed{seed}" for seed in (0, 1)]
    for seed, folder in zip((0, 1), folders, strict=True):
        train = split_of(read_netcdf(data), "train")
        meta_train(cfg, Combination.parse(COMBO), seed, train, folder, torch.device("cpu"), False)
    models = [str(f / "model.pt") for f in folders]
    fitted = [str(f / "fitted.nc") for f in folders]
    code = cli.main(["fit", "--config", str(config), "--model", *models, "--data", str(data),
                     "--out", *fitted, "--threads", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    return {"config": str(config), "data": str(data), "models": models, "fitted": fitted}


def stage_args(stage_name: str, runs: dict, models: list, fitted: list, outs: list) -> list:
    needs_model, _ = STAGES[stage_name]
    args = [stage_name, "--config", runs["config"], "--threads", "1"]
    if needs_model:
        args += ["--model", *models]
    return args + ["--fitted", *fitted, "--out", *outs]


def assert_same_file(a: str | Path, b: str | Path) -> None:
    """Identical data and attributes, except the seconds each stage took."""
    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        x, y = x.load(), y.load()
        for ds in (x, y):
            ds.attrs.pop("inrroute_seconds")
        xr.testing.assert_identical(x, y)


def test_fit_of_two_runs_equals_each_run_alone(runs, tmp_path):
    for i in (0, 1):
        alone = tmp_path / f"fitted{i}.nc"
        code = cli.main(["fit", "--config", runs["config"], "--model", runs["models"][i],
                         "--data", runs["data"], "--out", str(alone), "--threads", "1",
                         "--no-progress"])  # fmt: skip
        assert code == 0
        assert_same_file(alone, runs["fitted"][i])
    # The two runs really are different models, so pairing by position matters.
    a, b = (read_netcdf(f)["phi"].values for f in runs["fitted"])
    assert not np.allclose(a, b)


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_stage_of_two_runs_equals_each_run_alone(stage_name, runs, tmp_path):
    _, name = STAGES[stage_name]
    both = [str(tmp_path / f"both{i}_{name}") for i in (0, 1)]
    assert cli.main(stage_args(stage_name, runs, runs["models"], runs["fitted"], both)) == 0
    for i in (0, 1):
        alone = str(tmp_path / f"alone{i}_{name}")
        args = stage_args(stage_name, runs, [runs["models"][i]], [runs["fitted"][i]], [alone])
        assert cli.main(args) == 0
        assert_same_file(alone, both[i])


def test_lists_of_different_lengths_are_refused(runs, tmp_path):
    out = tmp_path / "reader.nc"
    proc = subprocess.run(
        [sys.executable, "-m", "inrroute.cli", "read", "--config", runs["config"],
         "--model", *runs["models"], "--fitted", runs["fitted"][0], "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--model: 2 files" in proc.stderr and "--fitted: 1 files" in proc.stderr
    assert "--out: 1 files" in proc.stderr
    assert not out.exists()


def test_geometry_runs_without_torch(runs, tmp_path):
    """The CPU-only stage skips torch's start-up (seconds per job on a small machine)."""
    out = tmp_path / "geometry.nc"
    code = (
        "import sys\n"
        "from inrroute.cli import main\n"
        f"rc = main({stage_args('geometry', runs, [], runs['fitted'][:1], [str(out)])!r})\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["0", "False"], proc.stderr
    assert float(read_netcdf(out)["knn_consistency"]) > 0
