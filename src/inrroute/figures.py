"""Figures of the study (matplotlib, Agg backend, PNG).

:func:`run_figures` draws every figure of ``study.FIGURES`` from the gathered summary and
the statistics tables. Figures compute no statistics: every mean, interval, correlation
and significance mark is read from a table of ``inrroute.stats``; the summary supplies
only the per-run values drawn as points or thin lines. :func:`save_figure` writes a
figure atomically. Figures must also render for a smoke run (one dataset, two seeds, two
combinations), so single-level factors, missing combinations (NaN cells) and undefined
correlations are drawn as notes instead of raising.
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
from matplotlib.lines import Line2D

from inrroute.io import atomic_path

from .study import (
    FACTOR_NAMES,
    FIGURES,
    FRESH_REFERENCE_FAMILY,
    GEOMETRY_METRICS,
    INTERVENTIONS_BIAS,
    INTERVENTIONS_CONTROL,
)

FACTORS = FACTOR_NAMES
DPI = 120
BIAS_COLOUR = "tab:red"
CONTROL_COLOUR = "tab:grey"
LEVEL_COLOURS = ("tab:blue", "tab:orange")
FAMILY_COLOURS = ("tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:olive")
ALPHA = 0.05  # significance mark on the interaction plots (Holm p within the ANOVA)
MAX_RECON_COLUMNS = 8


def run_figures(summary: xr.Dataset, tables: dict[str, pd.DataFrame]) -> dict[str, Figure]:
    """The figures stage: one Figure per name in study.FIGURES."""
    empty = pd.DataFrame()
    figs = {
        "tokenflow": tokenflow_figure(tables.get("tokenflow_curve", empty), summary),
        "interventions": interventions_figure(tables.get("intervention_drops", empty), summary),
        "interactions": interactions_figure(
            tables.get("interaction_means", empty), tables.get("anova", empty), summary
        ),
        "geometry_vs_accuracy": geometry_vs_accuracy_figure(
            summary, tables.get("geometry_correlation", empty)
        ),
        "reader_families": reader_families_figure(tables.get("reader_families", empty), summary),
    }
    return {name: figs[name] for name in FIGURES}


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


def note(ax: plt.Axes, text: str) -> None:
    """Write an explanatory note in the middle of an otherwise empty panel."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)


def subplot_grid(nrows: int, ncols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a 2-D array of axes, whatever the shape."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    return fig, axes


def _of(table: pd.DataFrame, name: str) -> pd.DataFrame:
    if table is None or table.empty or "dataset" not in table:
        return pd.DataFrame()
    return table[table["dataset"].astype(str) == name]


def _floats(frame: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)


# ------------------------------------------------------------------ token flow


def tokenflow_figure(curve: pd.DataFrame, ds: xr.Dataset) -> Figure:
    """Per dataset: Spearman rho per depth with its per-depth CI and the joint band
    (left), and every run's class consistency per depth, coloured by cluster (right)."""
    names = dataset_names(ds)
    fig, axes = subplot_grid(len(names), 2, 5.2, 3.4)
    for row, name in enumerate(names):
        plot_tokenflow_curve(axes[row, 0], _of(curve, name), name)
        plot_tokenflow_runs(axes[row, 1], ds, name)
    fig.suptitle("Token flow: where class consistency predicts reader accuracy")
    return fig


def plot_tokenflow_curve(ax: plt.Axes, sub: pd.DataFrame, name: str) -> None:
    """Left panel: rho per depth (phi first), 95% CI bars, joint band shaded."""
    ax.set_title(f"{name}: Spearman rho vs reader accuracy", fontsize=9)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_ylabel("Spearman rho (all runs)")
    if sub.empty or not np.isfinite(_floats(sub, "spearman_rho")).any():
        note(ax, "correlation undefined\n(needs >= 3 runs with varying accuracy)")
        return
    sub = sub.sort_values("depth_index")
    x = np.arange(len(sub))
    rho = _floats(sub, "spearman_rho")
    ax.set_xticks(x, list(sub["depth"].astype(str)), rotation=45, ha="right", fontsize=7)
    ax.fill_between(x, _floats(sub, "band_low"), _floats(sub, "band_high"), alpha=0.2,
                    color="tab:blue", label="joint 95% band (seed bootstrap)")  # fmt: skip
    err = np.abs(np.vstack([rho - _floats(sub, "ci_low"), _floats(sub, "ci_high") - rho]))
    ax.errorbar(x, rho, yerr=np.nan_to_num(err), fmt="o-", color="tab:blue", capsize=3,
                label="rho, 95% CI per depth")  # fmt: skip
    blocks = np.flatnonzero(sub["stage"].astype(str).to_numpy() == "block")
    if blocks.size:
        ax.axvspan(blocks[0] - 0.4, blocks[-1] + 0.4, color="tab:green", alpha=0.08,
                   label="transformer blocks")  # fmt: skip
    ax.legend(fontsize=6, loc="lower right")


def plot_tokenflow_runs(ax: plt.Axes, ds: xr.Dataset, name: str) -> None:
    """Right panel: one thin line per run (kNN consistency per reader depth)."""
    ax.set_title(f"{name}: token-flow kNN consistency, one line per run", fontsize=9)
    depths = [str(d) for d in ds["depth"].values]
    ax.set_xticks(range(len(depths)), depths, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("kNN class consistency")
    da = ds["tokenflow_consistency"].sel(dataset=name)
    drawn = False
    for i, level in enumerate(da["cluster"].values):
        runs = da.sel(cluster=level).transpose(..., "depth").values.reshape(-1, len(depths))
        for y in runs[np.isfinite(runs).any(axis=1)]:
            ax.plot(range(len(depths)), y, color=LEVEL_COLOURS[i % 2], lw=0.6, alpha=0.5)
            drawn = True
    if not drawn:
        note(ax, "no token-flow values")
        return
    handles = [Line2D([], [], color=LEVEL_COLOURS[i % 2], label=f"cluster={int(lv)}")
               for i, lv in enumerate(da["cluster"].values)]  # fmt: skip
    ax.legend(handles=handles, fontsize=7)


# ------------------------------------------------------------------ interventions


def interventions_figure(drops: pd.DataFrame, ds: xr.Dataset) -> Figure:
    """Per dataset: the small drops (bias interventions and the column controls side by
    side, per bias_route level) on their own axis, and bias_only on a separate axis."""
    names = dataset_names(ds)
    fig, axes = subplot_grid(len(names), 2, 5.0, 3.6)
    for row, name in enumerate(names):
        sub = _of(drops, name)
        sub = sub[sub["kind"].isin(["bias", "control"])] if not sub.empty else sub
        small = [z for z in (*INTERVENTIONS_BIAS, *INTERVENTIONS_CONTROL) if z != "bias_only"]
        plot_drops(axes[row, 0], sub, small, f"{name}: bias column vs single-column controls")
        plot_drops(axes[row, 1], sub, ["bias_only"], f"{name}: bias_only (weights zeroed)")
        if axes[row, 1].get_legend() is not None:  # the left panel's legend serves both
            axes[row, 1].get_legend().remove()
    fig.suptitle("Accuracy drop under interventions (mean over seeds, 95% CI across seeds)")
    return fig


def plot_drops(ax: plt.Axes, sub: pd.DataFrame, order: Sequence[str], title: str) -> None:
    """Grouped bars: one group per intervention, one bar per bias_route level."""
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("accuracy drop (none - intervention)", fontsize=8)
    ax.axhline(0.0, color="black", lw=0.6)
    if sub.empty:
        note(ax, "no intervention drops")
        return
    order = [z for z in order if z in set(sub["intervention"])]
    levels = [lv for lv in ("0", "1") if lv in set(sub["bias_route"].astype(str))] or ["all"]
    width = 0.8 / len(levels)
    for k, level in enumerate(levels):
        part = sub[sub["bias_route"].astype(str) == level].set_index("intervention")
        part = part.reindex(order)
        est = _floats(part, "estimate")
        err = np.abs(np.vstack([est - _floats(part, "ci_low"), _floats(part, "ci_high") - est]))
        x = np.arange(len(order)) + (k - (len(levels) - 1) / 2) * width
        colours = [CONTROL_COLOUR if z in INTERVENTIONS_CONTROL else BIAS_COLOUR for z in order]
        ax.bar(x, est, width, yerr=np.nan_to_num(err), color=colours, capsize=3,
               edgecolor="black", hatch="" if level != "1" else "//", alpha=0.85)  # fmt: skip
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
    handles = [
        plt.Rectangle((0, 0), 1, 1, fc=BIAS_COLOUR, ec="black", label="bias column"),
        plt.Rectangle((0, 0), 1, 1, fc=CONTROL_COLOUR, ec="black", label="control column"),
    ]
    if len(levels) > 1:
        handles += [
            plt.Rectangle((0, 0), 1, 1, fc="white", ec="black", label="bias_route=0"),
            plt.Rectangle((0, 0), 1, 1, fc="white", ec="black", hatch="//", label="bias_route=1"),
        ]
    ax.legend(handles=handles, fontsize=6)


# ------------------------------------------------------------------ reader families

FAMILY_DROPS = ("bias_zero", "bias_shuffle", "bias_mean", "col_zero", "col_shuffle")


def reader_families_figure(table: pd.DataFrame, ds: xr.Dataset) -> Figure:
    """Per dataset: test accuracy of the trained reader and of each fresh reader family
    (left), and their accuracy drops under the bias interventions and the column controls
    (right); means over seeds with 95% CIs across seeds, from the reader_families table."""
    names = dataset_names(ds)
    fig, axes = subplot_grid(len(names), 2, 5.2, 3.6)
    for row, name in enumerate(names):
        sub = _of(table, name)
        ax_acc, ax_drop = axes[row]
        ax_acc.set_title(f"{name}: test accuracy per reader", fontsize=9)
        ax_drop.set_title(f"{name}: accuracy drop per reader", fontsize=9)
        if sub.empty:
            note(ax_acc, "no reader_families table")
            note(ax_drop, "no reader_families table")
            continue
        readers = list(dict.fromkeys(sub["reader_family"].astype(str)))
        acc = sub[sub["response"] == "accuracy"].set_index("reader_family").reindex(readers)
        est = _floats(acc, "estimate")
        err = np.abs(np.vstack([est - _floats(acc, "ci_low"), _floats(acc, "ci_high") - est]))
        colours = [CONTROL_COLOUR if r == "trained" else FAMILY_COLOURS[i % len(FAMILY_COLOURS)]
                   for i, r in enumerate(readers)]  # fmt: skip
        ax_acc.bar(range(len(readers)), est, yerr=np.nan_to_num(err), color=colours,
                   capsize=3, edgecolor="black")  # fmt: skip
        ax_acc.set_xticks(range(len(readers)), readers, rotation=20, fontsize=8)
        ax_acc.set_ylabel("test accuracy", fontsize=8)
        finite = est[np.isfinite(est)]
        if finite.size:
            ax_acc.set_ylim(max(0.0, float(finite.min()) - 0.15), 1.0)
        order = [z for z in FAMILY_DROPS if f"drop_{z}" in set(sub["response"])]
        width = 0.8 / len(readers)
        for k, reader in enumerate(readers):
            part = sub[sub["reader_family"] == reader].set_index("response")
            part = part.reindex([f"drop_{z}" for z in order])
            e = _floats(part, "estimate")
            r = np.abs(np.vstack([e - _floats(part, "ci_low"), _floats(part, "ci_high") - e]))
            x = np.arange(len(order)) + (k - (len(readers) - 1) / 2) * width
            ax_drop.bar(x, e, width, yerr=np.nan_to_num(r), color=colours[k], capsize=2,
                        edgecolor="black", label=reader)  # fmt: skip
        ax_drop.axhline(0.0, color="black", lw=0.6)
        ax_drop.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
        ax_drop.set_ylabel("accuracy drop (none - intervention)", fontsize=8)
        ax_drop.legend(fontsize=6)
    fig.suptitle(
        "Is the routing reader-dependent? Trained reader and fresh reader families "
        "(mean over seeds, 95% CI across seeds)"
    )
    return fig


# ------------------------------------------------------------------ interactions


def interactions_figure(
    means: pd.DataFrame, anova: pd.DataFrame, ds: xr.Dataset, response: str = "reader_accuracy"
) -> Figure:
    """Interaction plots for every factor pair (rows: datasets, columns: the six pairs):
    mean over seeds with seed-level 95% CIs, and the ANOVA's verdict on the interaction
    term in the panel title (Holm p; '*' when below ALPHA)."""
    names = dataset_names(ds)
    pairs = list(itertools.combinations(FACTORS, 2))
    fig, axes = subplot_grid(len(names), len(pairs), 2.7, 2.6)
    for row, name in enumerate(names):
        sub = _of(means, name)
        sub = sub[sub["response"] == response] if not sub.empty else sub
        tests = anova[anova["scope"].astype(str) == name] if not anova.empty else anova
        for col, (a, b) in enumerate(pairs):
            ax = axes[row, col]
            plot_interaction(ax, sub, a, b)
            ax.set_title(f"{name}: {a} x {b}\n{interaction_mark(tests, response, a, b)}",
                         fontsize=7)  # fmt: skip
        axes[row, 0].set_ylabel(response, fontsize=8)
    fig.suptitle(
        f"Interaction plots of {response}: mean over seeds and the other factors, 95% CI "
        "across seeds; the title gives the ANOVA's test of the interaction"
    )
    return fig


def interaction_mark(anova: pd.DataFrame, response: str, a: str, b: str) -> str:
    """'interaction Holm p = 0.012 *' from the ANOVA table, or why there is none."""
    if anova.empty:
        return "no ANOVA"
    row = anova[(anova["response"] == response) & (anova["term"] == f"C({a}):C({b})")]
    if row.empty:
        return "interaction not estimable"
    p = float(pd.to_numeric(row["p_holm"], errors="coerce").iloc[0])
    if not np.isfinite(p):
        return "interaction not testable"
    star = " *" if p < ALPHA else " (n.s.)"
    return f"interaction Holm p = {p:.3g}{star}"


def plot_interaction(ax: plt.Axes, sub: pd.DataFrame, a: str, b: str) -> None:
    """One panel: mean response over A levels, one line per B level, CI error bars."""
    ax.tick_params(labelsize=7)
    ax.set_xlabel(a, fontsize=8)
    part = sub[(sub["factor_a"] == a) & (sub["factor_b"] == b)] if not sub.empty else sub
    if part.empty:
        note(ax, "no runs")
        return
    a_levels = sorted(int(v) for v in part["level_a"].unique())
    for i, (level, line) in enumerate(part.groupby("level_b", sort=True)):
        line = line.sort_values("level_a")
        est = _floats(line, "estimate")
        err = np.abs(np.vstack([est - _floats(line, "ci_low"), _floats(line, "ci_high") - est]))
        shift = (i - 0.5) * 0.06  # side by side, so the two bars do not hide each other
        ax.errorbar(line["level_a"].astype(float) + shift, est, yerr=np.nan_to_num(err),
                    fmt="o-", capsize=3, color=LEVEL_COLOURS[i % 2],
                    label=f"{b}={int(level)}")  # fmt: skip
    ax.set_xticks(a_levels)
    ax.set_xlim(min(a_levels) - 0.3, max(a_levels) + 0.3)
    if len(a_levels) < 2:
        ax.set_xlabel(f"{a} (one level)", fontsize=8)
    ax.legend(fontsize=6)


# ------------------------------------------------------------------ geometry


def geometry_vs_accuracy_figure(ds: xr.Dataset, corr: pd.DataFrame | None = None) -> Figure:
    """Each geometry metric (and fresh-reader accuracy) against trained-reader accuracy,
    one point per run coloured by cluster level (the factor that splits the clouds);
    the titles quote the pooled and within-cell rho from the geometry_correlation table."""
    corr = pd.DataFrame() if corr is None else corr
    if "reader_family" in ds.get("fresh_reader_accuracy", xr.DataArray()).dims:
        # the fresh transformer, as in the geometry_correlation table
        families = [str(f) for f in ds["reader_family"].values]
        fresh = ds["fresh_reader_accuracy"].assign_coords(reader_family=families)
        ds = ds.drop_vars("fresh_reader_accuracy")
        if FRESH_REFERENCE_FAMILY in families:
            ds["fresh_reader_accuracy"] = fresh.sel(reader_family=FRESH_REFERENCE_FAMILY, drop=True)
    metrics = [m for m in (*GEOMETRY_METRICS, "fresh_reader_accuracy") if m in ds.data_vars]
    ncols = 4
    nrows = max(1, int(np.ceil(len(metrics) / ncols)))
    fig, axes = subplot_grid(nrows, ncols, 3.1, 3.0)
    names = dataset_names(ds)
    markers = ("o", "s", "^", "D")
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        parts = []
        for d, name in enumerate(names):
            cell = ds[[metric, "reader_accuracy"]].sel(dataset=name)
            for i, level in enumerate(cell["cluster"].values):
                sel = cell.sel(cluster=level)
                ax.scatter(sel[metric].values.ravel(), sel["reader_accuracy"].values.ravel(),
                           s=12, alpha=0.7, color=LEVEL_COLOURS[i % 2],
                           marker=markers[d % len(markers)])  # fmt: skip
            parts.append(f"{name}: {rho_text(_of(corr, name), metric)}")
        ax.set_title(metric + "\n" + "\n".join(parts), fontsize=6.5)
        ax.set_xlabel(metric, fontsize=7)
        ax.set_ylabel("reader accuracy", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    handles = [Line2D([], [], ls="", marker="o", color=LEVEL_COLOURS[i % 2],
                      label=f"cluster={int(lv)}")
               for i, lv in enumerate(ds["cluster"].values)]  # fmt: skip
    handles += [Line2D([], [], ls="", marker=markers[d % len(markers)], color="black", label=n)
                for d, n in enumerate(names) if len(names) > 1]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7)
    fig.suptitle("Exposed geometry of phi versus trained-reader accuracy (one point per run)")
    return fig


def rho_text(corr: pd.DataFrame, metric: str) -> str:
    """'rho 0.28 pooled, 0.18 within cells' from the table, 'n/a' where undefined."""
    if corr.empty:
        return "rho n/a"
    out = []
    for kind, label in (("pooled", "pooled"), ("within_cells", "within cells")):
        row = corr[(corr["metric"] == metric) & (corr["kind"] == kind)]
        rho = (
            float(pd.to_numeric(row["spearman_rho"], errors="coerce").iloc[0])
            if len(row)
            else np.nan
        )
        out.append(f"{rho:.2f} {label}" if np.isfinite(rho) else f"n/a {label}")
    return "rho " + ", ".join(out)


# ------------------------------------------------------------------ reconstructions


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
