"""Figures render to real PNG files, for a full synthetic study and for a smoke-shaped run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from inrroute import figures
from synthetic import make_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMOKE_COMBOS = [(0, 0, 0, 0), (1, 1, 1, 1)]


def curve_table(ds: xr.Dataset) -> pd.DataFrame:
    """A tokenflow_curve-shaped table computed directly (no dependency on stats.py)."""
    rows = []
    for name in figures.dataset_names(ds):
        acc = ds["reader_accuracy"].sel(dataset=name).values
        for i, depth in enumerate(ds["depth"].values):
            x = ds["tokenflow_consistency"].sel(dataset=name, depth=depth).values
            rho, n = figures.spearman(x, acc)
            rows.append(
                {
                    "dataset": name,
                    "depth": str(depth),
                    "depth_index": i,
                    "spearman_rho": rho,
                    "p": 0.01,
                    "ci_low": rho - 0.2,
                    "ci_high": min(rho + 0.2, 1.0),
                    "n": n,
                }
            )
    return pd.DataFrame(rows)


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000, f"{path} is suspiciously small ({len(data)} bytes)"


@pytest.fixture(scope="module")
def full() -> xr.Dataset:
    return make_summary(datasets=("digits", "fashion_mnist"), seeds=(0, 1, 2))


@pytest.fixture(scope="module")
def smoke() -> xr.Dataset:
    return make_summary(datasets=("digits",), seeds=(0, 1), combos=SMOKE_COMBOS)


@pytest.fixture(params=["full", "smoke"])
def summary(request: pytest.FixtureRequest) -> xr.Dataset:
    return request.getfixturevalue(request.param)


def test_tokenflow_figure(summary: xr.Dataset, tmp_path: Path) -> None:
    fig = figures.tokenflow_figure(curve_table(summary), summary)
    figures.save_figure(fig, tmp_path / "tokenflow.png")
    assert_png(tmp_path / "tokenflow.png")


def test_tokenflow_figure_undefined_curve(smoke: xr.Dataset, tmp_path: Path) -> None:
    curve = curve_table(smoke).assign(spearman_rho=np.nan, ci_low=np.nan, ci_high=np.nan)
    figures.save_figure(figures.tokenflow_figure(curve, smoke), tmp_path / "t.png")
    assert_png(tmp_path / "t.png")


def test_interventions_figure(summary: xr.Dataset, tmp_path: Path) -> None:
    fig = figures.interventions_figure(summary)
    figures.save_figure(fig, tmp_path / "interventions.png")
    assert_png(tmp_path / "interventions.png")


@pytest.mark.parametrize("response", ["reader_accuracy", "knn_consistency"])
def test_interactions_figure(summary: xr.Dataset, response: str, tmp_path: Path) -> None:
    fig = figures.interactions_figure(summary, response=response)
    assert len([ax for ax in fig.axes if ax.has_data()]) >= 6
    figures.save_figure(fig, tmp_path / "interactions.png")
    assert_png(tmp_path / "interactions.png")


def test_geometry_vs_accuracy_figure(summary: xr.Dataset, tmp_path: Path) -> None:
    fig = figures.geometry_vs_accuracy_figure(summary)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(figures.GEOMETRY_METRICS)
    assert all("rho=" in t for t in titles)
    figures.save_figure(fig, tmp_path / "geometry.png")
    assert_png(tmp_path / "geometry.png")


def test_geometry_rho_undefined_with_two_runs(tmp_path: Path) -> None:
    ds = make_summary(seeds=(0, 1), combos=[(0, 0, 0, 0)])
    fig = figures.geometry_vs_accuracy_figure(ds)
    assert all("rho=n/a" in ax.get_title() for ax in fig.axes if ax.get_title())
    figures.save_figure(fig, tmp_path / "g.png")
    assert_png(tmp_path / "g.png")


@pytest.mark.parametrize("channels,n", [(1, 5), (3, 10)])
def test_reconstructions_figure(channels: int, n: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(n, channels, 8, 8))
    recons = np.clip(images + 0.05 * rng.normal(size=images.shape), 0, 1)
    fig = figures.reconstructions_figure(
        images, recons, labels=list(range(n)), psnr=rng.uniform(20, 30, n), title="digits"
    )
    figures.save_figure(fig, tmp_path / "recon.png")
    assert_png(tmp_path / "recon.png")


def test_reconstructions_figure_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="must be equal"):
        figures.reconstructions_figure(
            np.zeros((2, 1, 8, 8)), np.zeros((3, 1, 8, 8)), None, None, "x"
        )


def test_save_figure_is_atomic_and_closes(tmp_path: Path) -> None:
    fig = figures.reconstructions_figure(
        np.zeros((1, 1, 4, 4)), np.ones((1, 1, 4, 4)), None, None, "x"
    )
    before = plt.get_fignums()
    figures.save_figure(fig, tmp_path / "sub" / "r.png")
    assert fig.number not in plt.get_fignums() and len(plt.get_fignums()) < len(before)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["r.png"]
