"""QC overview: the distributions the filters act on, with their thresholds, and which cells were kept."""

from __future__ import annotations

import os

import anndata as ad
import numpy as np
from matplotlib.figure import Figure

KEPT_COLOUR = "#1f77b4"
REMOVED_COLOUR = "#d62728"
THRESHOLD_COLOUR = "#444444"


def _data_limits(values: np.ndarray, *, log: bool) -> tuple[float, float]:
    """Axis range of the data alone, so a threshold far outside it does not squash the histogram."""
    low, high = float(values.min()), float(values.max())
    pad = 0.03 * (high - low or 1.0)
    return (low - pad, high + pad) if not log else (low - max(pad, 0.05), high + max(pad, 0.05))


def _hist(ax, values, kept, *, bins, title, xlabel, thresholds, log_x=False, limits=None):
    if log_x:
        values = np.log10(np.maximum(values, 1))
        thresholds = {name: np.log10(max(t, 1)) for name, t in thresholds.items()}
        xlabel = f"log10 {xlabel}"
    edges = np.histogram_bin_edges(values, bins=bins)
    groups = [(values[kept], KEPT_COLOUR, f"kept ({kept.sum():,})")]
    if (~kept).any():
        groups.append((values[~kept], REMOVED_COLOUR, f"removed ({(~kept).sum():,})"))
    ax.hist(
        [g[0] for g in groups], bins=edges, stacked=True, color=[g[1] for g in groups], label=[g[2] for g in groups]
    )
    for (name, value), style in zip(thresholds.items(), ("--", ":"), strict=False):
        ax.axvline(value, color=THRESHOLD_COLOUR, linestyle=style, linewidth=1.2, label=name)
    ax.set_xlim(*(limits or _data_limits(values, log=log_x)))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cells")
    ax.legend(fontsize=8, loc="best", frameon=False)


def qc_plot(
    adata: ad.AnnData, adata_qc: ad.AnnData, *, title: str | None = None, save: str | os.PathLike | None = None
) -> Figure:
    """Counts, genes and mitochondrial fraction per cell before filtering, thresholds drawn, kept vs removed.

    ``adata`` is the unfiltered input after :func:`scdefr.pp.qc` added its metrics; ``adata_qc`` is
    what :func:`scdefr.pp.qc` returned (it supplies the thresholds and the kept cells). ``save``
    writes a PNG (any suffix, so atomic temporary names work).
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
        xlabel="counts",
        thresholds=count_thresholds,
        log_x=True,
    )
    gene_thresholds = {f"min-genes {params['min_genes']}": params["min_genes"]} if params["min_genes"] else {}
    _hist(
        axes[0, 1], n_genes, kept, bins=60, title="Genes detected per cell", xlabel="genes", thresholds=gene_thresholds
    )
    mito_thresholds = {}
    if params["max_pct_mito"] is not None:
        mito_thresholds[f"max-pct-mito {params['max_pct_mito']:g}"] = params["max_pct_mito"]
    has_mito = summary["mito_genes"] > 0
    if has_mito:
        mito_high = max(float(pct_mito.max()), params["max_pct_mito"] or 0.0)
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
    if params["min_genes"]:
        scatter.axhline(params["min_genes"], color=THRESHOLD_COLOUR, linestyle="--", linewidth=1)
    for limit in (params["min_counts"], params["max_counts"]):
        if limit:
            scatter.axvline(limit, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1)
    scatter.set_xscale("log")
    low, high = _data_limits(np.log10(np.maximum(n_counts, 1)), log=True)
    scatter.set_xlim(10**low, 10**high)
    scatter.set_ylim(*_data_limits(n_genes, log=False))
    scatter.set_xlabel("counts")
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
