"""Figures of the study (matplotlib, Agg backend, PNG).

Every function takes the gathered summary (``results/summary.nc``) or a statistics table
and returns a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes it atomically.
Figures must also render for a smoke run (one dataset, two seeds, two combinations), so
single-level factors, missing combinations (NaN cells) and undefined correlations are
drawn as notes instead of raising.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: rules run on compute nodes without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import stats

from inrroute.findings import intervention_drops, mean_ci
from inrroute.io import atomic_path

from .stats import FACTORS, GEOMETRY_METRICS

DPI = 120
BIAS_COLOUR = "tab:red"
CONTROL_COLOUR = "tab:grey"
RHO_THRESHOLD = 0.5  # the level findings.py uses to say where the token-flow curve rises
MAX_RECON_COLUMNS = 8


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG to ``path`` atomically and release its memory."""
    try:
        with atomic_path(path) as tmp:
            # the temporary name does not end in .png, so the format must be explicit
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)


def dataset_names(ds: xr.Dataset) -> list[str]:
    """The dataset coordinate as a list of plain strings."""
    return [str(d) for d in ds["dataset"].values]


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Spearman rho over pairs where both are finite; NaN when undefined (n < 3, constant)."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(keep.sum())
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), n
    return float(stats.spearmanr(x, y).statistic), n


def note(ax: plt.Axes, text: str) -> None:
    """Write an explanatory note in the middle of an otherwise empty panel."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)


def subplot_grid(nrows: int, ncols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a 2-D array of axes, whatever the shape."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    return fig, axes


def tokenflow_figure(curve: pd.DataFrame, ds: xr.Dataset) -> Figure:
    """Per dataset: Spearman rho of per-depth consistency with reader accuracy (left, CI band)
    and mean token-flow consistency per depth for cluster off versus on (right)."""
    names = dataset_names(ds)
    depths = [str(d) for d in ds["depth"].values]
    fig, axes = subplot_grid(len(names), 2, 5.0, 3.2)
    for row, name in enumerate(names):
        plot_tokenflow_curve(axes[row, 0], curve, name, depths)
        plot_tokenflow_consistency(axes[row, 1], ds, name, depths)
    fig.suptitle("Token flow: where class consistency predicts reader accuracy")
    return fig


def plot_tokenflow_curve(ax: plt.Axes, curve: pd.DataFrame, name: str, depths: list[str]) -> None:
    """Left panel: rho per depth with its confidence band."""
    sub = curve[curve["dataset"].astype(str) == name].sort_values("depth_index")
    ax.set_title(f"{name}: Spearman rho vs reader accuracy", fontsize=9)
    ax.set_xticks(range(len(depths)), depths, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.axhline(RHO_THRESHOLD, color="grey", lw=0.6, ls="--")
    ax.set_ylabel("Spearman rho")
    rho = sub["spearman_rho"].to_numpy(dtype=float)
    if sub.empty or not np.isfinite(rho).any():
        n = int(sub["n"].max()) if not sub.empty and sub["n"].notna().any() else 0
        note(ax, f"correlation undefined\n({n} runs; needs >= 3 with varying accuracy)")
        return
    x = sub["depth_index"].to_numpy(dtype=float)
    ax.fill_between(
        x,
        sub["ci_low"].to_numpy(dtype=float),
        sub["ci_high"].to_numpy(dtype=float),
        alpha=0.25,
        color="tab:blue",
        label="95% CI",
    )
    ax.plot(x, rho, "o-", color="tab:blue", label="rho")
    ax.legend(fontsize=7, loc="lower right")


def plot_tokenflow_consistency(ax: plt.Axes, ds: xr.Dataset, name: str, depths: list[str]) -> None:
    """Right panel: mean kNN consistency per depth, one line per cluster level."""
    da = ds["tokenflow_consistency"].sel(dataset=name)
    ax.set_title(f"{name}: token-flow kNN consistency", fontsize=9)
    ax.set_xticks(range(len(depths)), depths, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("kNN class consistency")
    mean = da.mean(dim=[d for d in da.dims if d not in ("depth", "cluster")], skipna=True)
    drawn = False
    for level in da["cluster"].values:
        y = np.asarray(mean.sel(cluster=level, depth=depths).values, dtype=float)
        if np.isfinite(y).any():
            ax.plot(range(len(depths)), y, "o-", label=f"cluster={int(level)}")
            drawn = True
    if drawn:
        ax.legend(fontsize=7)
    else:
        note(ax, "no token-flow values")


def interventions_figure(ds: xr.Dataset) -> Figure:
    """Per dataset: mean accuracy drop per intervention with 95% t-CI over runs;
    bias-column interventions and single-column controls in different colours."""
    names = dataset_names(ds)
    fig, axes = subplot_grid(1, len(names), 5.0, 3.6)
    for col, name in enumerate(names):
        ax = axes[0, col]
        ax.set_title(f"{name}: accuracy drop under interventions", fontsize=9)
        ax.set_ylabel("accuracy drop (none - intervention)")
        if "none" not in [str(v) for v in ds["intervention"].values]:
            note(ax, "no 'none' baseline in the summary")
            continue
        drops = intervention_drops(ds, name)
        labels = list(drops)
        stats_ = [mean_ci(drops[k]) for k in labels]
        means = [m for m, _ in stats_]
        errs = [0.0 if not np.isfinite(h) else h for _, h in stats_]
        colours = [CONTROL_COLOUR if k.startswith("col_") else BIAS_COLOUR for k in labels]
        ax.bar(range(len(labels)), means, yerr=errs, color=colours, capsize=3)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.axhline(0.0, color="black", lw=0.6)
        n_runs = max((v.size for v in drops.values()), default=0)
        ax.set_xlabel(f"mean over {n_runs} runs, error bars: 95% t-CI", fontsize=7)
    handles = [
        Patch(color=BIAS_COLOUR, label="bias column"),
        Patch(color=CONTROL_COLOUR, label="random column (control)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8)
    return fig


def interactions_figure(ds: xr.Dataset, response: str = "reader_accuracy") -> Figure:
    """Interaction plots for every factor pair (rows: datasets, columns: the six pairs).

    Mean response against factor A, one line per level of factor B, averaged over seeds
    and the other two factors; non-parallel lines indicate an interaction.
    """
    names = dataset_names(ds)
    pairs = list(itertools.combinations(FACTORS, 2))
    fig, axes = subplot_grid(len(names), len(pairs), 2.6, 2.4)
    for row, name in enumerate(names):
        da = ds[response].sel(dataset=name)
        for col, (a, b) in enumerate(pairs):
            plot_interaction(axes[row, col], da, a, b)
            axes[row, col].set_title(f"{name}: {a} x {b}", fontsize=8)
        axes[row, 0].set_ylabel(response, fontsize=8)
    fig.suptitle(f"Interaction plots of {response} (mean over seeds and other factors)")
    return fig


def plot_interaction(ax: plt.Axes, da: xr.DataArray, a: str, b: str) -> None:
    """One interaction panel: mean of ``da`` over A levels, a line per B level."""
    other = [d for d in da.dims if d not in (a, b)]
    mean = da.mean(dim=other, skipna=True)
    a_levels = [int(v) for v in da[a].values]
    drawn = False
    for level in da[b].values:
        y = np.asarray(mean.sel({b: level, a: a_levels}).values, dtype=float)
        if np.isfinite(y).any():
            ax.plot(a_levels, y, "o-", label=f"{b}={int(level)}")
            drawn = True
    ax.set_xticks(a_levels)
    ax.set_xlim(min(a_levels) - 0.3, max(a_levels) + 0.3)
    ax.set_xlabel(a + (" (one level)" if len(a_levels) < 2 else ""), fontsize=8)
    ax.tick_params(labelsize=7)
    if drawn:
        ax.legend(fontsize=6)
    else:
        note(ax, "no runs")


def geometry_vs_accuracy_figure(ds: xr.Dataset) -> Figure:
    """Scatter of each geometry metric (and fresh-reader accuracy) against trained-reader
    accuracy across runs, one panel per metric, Spearman rho per dataset in the title."""
    metrics = [m for m in GEOMETRY_METRICS if m in ds.data_vars]
    ncols = 4
    nrows = max(1, int(np.ceil(len(metrics) / ncols)))
    fig, axes = subplot_grid(nrows, ncols, 3.0, 2.8)
    names = dataset_names(ds)
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        parts = []
        for name in names:
            x = ds[metric].sel(dataset=name).values
            y = ds["reader_accuracy"].sel(dataset=name).values
            ax.scatter(x.ravel(), y.ravel(), s=12, alpha=0.7, label=name)
            rho, n = spearman(x, y)
            rho_text = f"{rho:.2f}" if np.isfinite(rho) else "n/a"
            parts.append(f"{name}: rho={rho_text} (n={n})")
        ax.set_title(metric + "\n" + "\n".join(parts), fontsize=7)
        ax.set_xlabel(metric, fontsize=7)
        ax.set_ylabel("reader accuracy", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    if len(names) > 1:
        axes.ravel()[0].legend(fontsize=6)
    fig.suptitle("Exposed geometry of phi versus trained-reader accuracy (one point per run)")
    return fig


def to_display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) for grey or (H, W, 3) for RGB, clipped."""
    image = np.clip(np.asarray(image, dtype=float), 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))


def reconstructions_figure(
    images: np.ndarray,
    recons: np.ndarray,
    labels: Sequence | None,
    psnr: Sequence[float] | np.ndarray | None,
    title: str,
) -> Figure:
    """Test images (top of each pair of rows) above their SIREN reconstructions.

    ``images`` and ``recons`` are (N, C, H, W) in [0, 1], C = 1 (grey) or 3 (RGB);
    ``labels`` and ``psnr`` (dB) are per image and may be None.
    """
    images, recons = np.asarray(images), np.asarray(recons)
    if images.shape != recons.shape or images.ndim != 4:
        raise ValueError(f"images {images.shape} and recons {recons.shape} must be equal (N,C,H,W)")
    n = images.shape[0]
    ncols = max(1, min(n, MAX_RECON_COLUMNS))
    nrows = 2 * max(1, int(np.ceil(n / ncols)))
    fig, axes = subplot_grid(nrows, ncols, 1.3, 1.45)
    for ax in axes.ravel():
        ax.axis("off")
    grey = images.shape[1] == 1
    for i in range(n):
        top, bottom = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
        show_image(top, images[i], grey)
        show_image(bottom, recons[i], grey)
        if labels is not None:
            top.set_title(f"label {labels[i]}", fontsize=7)
        if psnr is not None:
            bottom.set_title(f"{float(np.asarray(psnr)[i]):.1f} dB", fontsize=7)
    fig.suptitle(f"{title}\n(top: test image, bottom: SIREN reconstruction)", fontsize=9)
    return fig


def show_image(ax: plt.Axes, image: np.ndarray, grey: bool) -> None:
    """Draw one (C, H, W) image without axes."""
    if grey:
        ax.imshow(to_display(image), cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(to_display(image))
    ax.axis("off")


def run_figures(summary: xr.Dataset, tables: dict[str, pd.DataFrame]) -> dict[str, Figure]:
    """Every study figure (study.FIGURES) from the summary and the statistics tables."""
    return {
        "tokenflow": tokenflow_figure(tables["tokenflow_curve"], summary),
        "interventions": interventions_figure(summary),
        "interactions": interactions_figure(summary),
        "geometry_vs_accuracy": geometry_vs_accuracy_figure(summary),
    }
