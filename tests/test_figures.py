"""Figures render to real PNG files, for a full synthetic study and for a smoke-shaped run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from inrroute import figures, stats
from inrroute.study import FIGURES
from synthetic import make_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMOKE_COMBOS = [(0, 0, 0, 0), (1, 1, 1, 1)]


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


@pytest.fixture
def tables(summary: xr.Dataset) -> dict[str, pd.DataFrame]:
    return stats.compute_all(summary, n_boot=50)


def test_run_figures_renders_every_figure(summary, tables, tmp_path: Path) -> None:
    figs = figures.run_figures(summary, tables)
    assert list(figs) == list(FIGURES)
    for name, fig in figs.items():
        figures.save_figure(fig, tmp_path / f"{name}.png")
        assert_png(tmp_path / f"{name}.png")


def test_figures_render_without_tables(summary, tmp_path: Path) -> None:
    for name, fig in figures.run_figures(summary, {}).items():
        figures.save_figure(fig, tmp_path / f"{name}.png")
        assert_png(tmp_path / f"{name}.png")


def test_interventions_put_bias_only_on_its_own_axis(full, tmp_path: Path) -> None:
    fig = figures.interventions_figure(
        stats.compute_all(full, n_boot=0)["intervention_drops"], full
    )
    left, right = fig.axes[0], fig.axes[1]
    assert "bias_only" not in [t.get_text() for t in left.get_xticklabels()]
    assert [t.get_text() for t in right.get_xticklabels()] == ["bias_only"]
    # make_summary drops 0.01-0.3 for the small ones and 0.45 for bias_only
    assert left.get_ylim()[1] < right.get_ylim()[1]


def test_interaction_titles_carry_the_anova_test(full) -> None:
    tables = stats.compute_all(full, n_boot=0)
    fig = figures.interactions_figure(tables["interaction_means"], tables["anova"], full)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles and all("interaction Holm p" in t for t in titles)
    assert any(line.get_children() for ax in fig.axes for line in ax.containers)  # CI bars


def test_geometry_titles_quote_pooled_and_within_cell_rho(full) -> None:
    tables = stats.compute_all(full, n_boot=0)
    fig = figures.geometry_vs_accuracy_figure(full, tables["geometry_correlation"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles and all("pooled" in t and "within cells" in t for t in titles)


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
