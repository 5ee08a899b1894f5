"""QC overview: the distributions the filters act on, with their thresholds, and which cells were kept."""

from __future__ import annotations

import os

import anndata as ad
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

KEPT_COLOUR = "#1f77b4"
REMOVED_COLOUR = "#d62728"
THRESHOLD_COLOUR = "#444444"


def _data_limits(values: np.ndarray, *, log: bool) -> tuple[float, float]:
    """Axis range of the data alone, so a threshold far outside it does not squash the histogram."""
    if log:
        low, high = np.log10(max(float(values.min()), 1.0)), np.log10(max(float(values.max()), 1.0))
        pad = max(0.03 * (high - low), 0.05)
        return 10 ** (low - pad), 10 ** (high + pad)
    low, high = float(values.min()), float(values.max())
    pad = 0.03 * (high - low or 1.0)
    return low - pad, high + pad


def _plain_log_axis(axis) -> None:
    """Ticks of a log axis at 1, 2 and 5 times powers of ten, labelled as plain numbers (1,000 not 10^3)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axis.set_minor_formatter(NullFormatter())


def _draw_thresholds(ax, thresholds: dict[str, float], limits: tuple[float, float]) -> None:
    """A dashed line per threshold inside the range shown; one outside it is named in the legend only."""
    for (name, value), style in zip(thresholds.items(), ("--", ":"), strict=False):
        if limits[0] <= value <= limits[1]:
            ax.axvline(value, color=THRESHOLD_COLOUR, linestyle=style, linewidth=1.2, label=name)
        else:
            side = "below" if value < limits[0] else "above"
            ax.plot([], [], " ", label=f"{name} ({side} every cell)")


def _hist(ax, values, kept, *, bins, title, xlabel, thresholds, log_x=False, limits=None):
    limits = limits or _data_limits(values, log=log_x)
    if log_x:
        values = np.maximum(values, 1)
        edges = np.logspace(np.log10(limits[0]), np.log10(limits[1]), bins + 1)
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
    else:
        edges = np.histogram_bin_edges(values, bins=bins, range=limits)
    groups = [(values[kept], KEPT_COLOUR, f"kept ({kept.sum():,})")]
    if (~kept).any():
        groups.append((values[~kept], REMOVED_COLOUR, f"removed ({(~kept).sum():,})"))
    ax.hist(
        [g[0] for g in groups], bins=edges, stacked=True, color=[g[1] for g in groups], label=[g[2] for g in groups]
    )
    _draw_thresholds(ax, thresholds, limits)
    ax.set_xlim(*limits)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cells")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="best", frameon=False)


def qc_plot(
    adata: ad.AnnData, adata_qc: ad.AnnData, *, title: str | None = None, save: str | os.PathLike | None = None
) -> Figure:
    """Plot counts, genes and mitochondrial fraction per cell before filtering, thresholds drawn, kept vs removed.

    Parameters
    ----------
    adata
        The unfiltered input after :func:`scdefr.pp.qc` added its metrics.
    adata_qc
        What :func:`scdefr.pp.qc` returned: it supplies the thresholds and the kept cells.
    title
        Put before the figure's heading (cells and genes before and after).
    save
        Write the figure there as a PNG (whatever the suffix, so atomic temporary names work).

    Returns
    -------
    matplotlib.figure.Figure
        Four panels: counts, genes and mitochondrial percentage per cell, and genes against counts.
    """
    params = adata_qc.uns["scdefr_qc"]["params"]
    summary = adata_qc.uns["scdefr_qc"]["summary"]
    kept = np.asarray(adata.obs_names.isin(adata_qc.obs_names))
    n_counts = adata.obs["n_counts"].to_numpy()
    n_genes = adata.obs["n_genes"].to_numpy()
    pct_mito = adata.obs["pct_counts_mt"].to_numpy()

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    count_thresholds = {f"min-counts {params['min_counts']}": params["min_counts"]} if params["min_counts"] else {}
    if params["max_counts"] is not None:
        count_thresholds[f"max-counts {params['max_counts']}"] = params["max_counts"]
    _hist(
        axes[0, 0],
        n_counts,
        kept,
        bins=60,
        title="Counts per cell",
        xlabel="counts (log scale)",
        thresholds=count_thresholds,
        log_x=True,
    )
    gene_thresholds = {f"min-genes {params['min_genes']}": params["min_genes"]} if params["min_genes"] else {}
    _hist(
        axes[0, 1], n_genes, kept, bins=60, title="Genes detected per cell", xlabel="genes", thresholds=gene_thresholds
    )
    mito_thresholds = {f"max-pct-mito {params['max_pct_mito']:g}": params["max_pct_mito"]}
    has_mito = summary["mito_genes"] > 0
    if has_mito:
        mito_high = max(float(pct_mito.max()), params["max_pct_mito"])
        _hist(
            axes[1, 0],
            pct_mito,
            kept,
            bins=50,
            title="Mitochondrial counts",
            xlabel="% of counts",
            thresholds=mito_thresholds,
            limits=(0.0, 1.05 * mito_high or 1.0),
        )
        axes[1, 0].set_yscale("log")  # the few dying cells would not show next to thousands of healthy ones
        axes[1, 0].set_ylabel("cells (log scale)")
    else:
        axes[1, 0].set_axis_off()
        prefixes = "/".join(params["mito_prefixes"])
        axes[1, 0].text(
            0.5,
            0.5,
            f"No mitochondrial genes ({prefixes}) found:\nthe mito filter removed nothing",
            ha="center",
            va="center",
            transform=axes[1, 0].transAxes,
        )

    scatter = axes[1, 1]
    order = np.argsort(pct_mito)  # high-mito cells on top
    colour = {"c": pct_mito[order], "cmap": "viridis", "vmin": 0, "vmax": max(float(pct_mito.max()), 1.0)}
    points = scatter.scatter(
        n_counts[order], n_genes[order], s=4, rasterized=True, **(colour if has_mito else {"color": KEPT_COLOUR})
    )
    if (~kept).any():
        scatter.scatter(
            n_counts[~kept],
            n_genes[~kept],
            s=14,
            facecolors="none",
            edgecolors=REMOVED_COLOUR,
            linewidths=0.6,
            label="removed",
        )
        scatter.legend(fontsize=8, loc="upper left", frameon=False)
    x_limits, y_limits = _data_limits(n_counts, log=True), _data_limits(n_genes, log=False)
    if params["min_genes"] and y_limits[0] <= params["min_genes"] <= y_limits[1]:
        scatter.axhline(params["min_genes"], color=THRESHOLD_COLOUR, linestyle="--", linewidth=1)
    for limit in (params["min_counts"], params["max_counts"]):
        if limit and x_limits[0] <= limit <= x_limits[1]:
            scatter.axvline(limit, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1)
    scatter.set_xscale("log")
    _plain_log_axis(scatter.xaxis)
    scatter.set_xlim(*x_limits)
    scatter.set_ylim(*y_limits)
    scatter.set_xlabel("counts (log scale)")
    scatter.set_ylabel("genes detected")
    scatter.set_title("Genes vs counts")
    if has_mito:
        fig.colorbar(points, ax=scatter, label="% mitochondrial")

    inp, out = summary["input"], summary["output"]
    heading = (
        f"{inp['cells']:,} -> {out['cells']:,} cells, {inp['genes']:,} -> {out['genes']:,} genes "
        f"(median {summary['median_counts']:,.0f} counts per kept cell)"
    )
    fig.suptitle(f"{title}: {heading}" if title else heading)
    if save is not None:
        fig.savefig(save, format="png", dpi=110)
    return fig
