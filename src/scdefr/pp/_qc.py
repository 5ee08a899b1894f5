"""QC metrics, cell and gene filters, size factors, normalisation and highly variable genes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ..errors import ScdefrError
from ..io import validate_raw_counts
from ..options import CommonOptions, QCOptions, takes_preset
from ._blocks import (
    annotations_of,
    cell_blocks,
    cell_metrics,
    cells_detecting,
    log_normalised,
    normalisation_factors,
    row_readable,
    submatrix,
)
from ._hvg import HVG_N_BINS, dispersions_of_blocks

logger = logging.getLogger(__name__)

# Where gene symbols live when var_names are gene ids (Cell Ranger / nf-core/scrnaseq / CELLxGENE).
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "gene_name", "gene_names", "feature_name", "symbol")


def mito_genes(adata: ad.AnnData, prefixes: Sequence[str] = QCOptions.mito_prefixes) -> np.ndarray:
    """Tell the mitochondrial genes by their symbols (a symbol column of ``var`` if var_names are ids).

    Parameters
    ----------
    adata
        Any AnnData; the first non-empty column of :data:`SYMBOL_COLUMNS` in ``var`` is used, else
        ``var_names``.
    prefixes
        Symbol prefixes of mitochondrial genes (``MT-`` human, ``mt-`` mouse).

    Returns
    -------
    numpy.ndarray
        Boolean mask over the genes.
    """
    names = adata.var_names.astype(str)
    for column in SYMBOL_COLUMNS:
        if column in adata.var and adata.var[column].notna().any():
            names = pd.Index(adata.var[column].astype(str))
            break
    return np.asarray(names.str.startswith(tuple(prefixes)), dtype=bool)


def qc_metrics(adata: ad.AnnData, *, mito_prefixes: Sequence[str] = QCOptions.mito_prefixes) -> None:
    """Add ``obs['n_counts', 'n_genes', 'pct_counts_mt']``, ``var['mt', 'n_cells']`` from the counts in X, in place.

    sc.pp.calculate_qc_metrics' totals, non-zero genes per cell and cells per gene, and percentage of
    mitochondrial counts, summed over blocks of cells: scanpy's also takes every gene's mean and
    variance, which holds a second copy of the matrix (benchmarks/qc_memory.py).

    Parameters
    ----------
    adata
        Raw counts in X.
    mito_prefixes
        Symbol prefixes of mitochondrial genes (see :func:`mito_genes`).
    """
    _add_qc_metrics(adata, row_readable(adata.X), mito_prefixes)


def _add_qc_metrics(adata: ad.AnnData, counts, mito_prefixes: Sequence[str]) -> None:
    """:func:`qc_metrics` from ``counts``, X in a form whose rows are cheap to take (:func:`row_readable`)."""
    adata.var["mt"] = mito_genes(adata, mito_prefixes)
    cells = np.arange(adata.n_obs)
    for column, values in cell_metrics(counts, cells, None, adata.var["mt"].to_numpy()).items():
        adata.obs[column] = values.to_numpy()
    adata.var["n_cells"] = cells_detecting(counts, cells)


def _cell_filters(obs: pd.DataFrame, params: dict) -> list[tuple[str, np.ndarray]]:
    """(name, keep-mask) of every active cell filter, in the order they are applied and reported."""
    filters = []
    if params["min_genes"]:
        filters.append(("min_genes", obs["n_genes"].to_numpy() >= params["min_genes"]))
    if params["min_counts"]:
        filters.append(("min_counts", obs["n_counts"].to_numpy() >= params["min_counts"]))
    if params["max_counts"] is not None:
        filters.append(("max_counts", obs["n_counts"].to_numpy() <= params["max_counts"]))
    filters.append(("max_pct_mito", obs["pct_counts_mt"].to_numpy() <= params["max_pct_mito"]))
    return filters


@takes_preset
def qc(
    adata: ad.AnnData,
    *,
    min_genes: int = QCOptions.min_genes,
    min_counts: int = QCOptions.min_counts,
    max_counts: int | None = QCOptions.max_counts,
    max_pct_mito: float = QCOptions.max_pct_mito,
    min_cells: int = QCOptions.min_cells,
    n_top_genes: int = QCOptions.n_top_genes,
    mito_prefixes: Sequence[str] = QCOptions.mito_prefixes,
    preset: str = CommonOptions.preset,
) -> ad.AnnData:
    """Filter cells and genes, normalise and select highly variable genes.

    ``adata`` gains its QC metrics in place (:func:`qc_metrics`), so :func:`scdefr.pl.qc_plot` can
    show what the filters removed; everything else goes into a new AnnData. Other obs columns, labels
    included, are carried along untouched.

    Parameters
    ----------
    adata
        Raw counts in X (as :func:`scdefr.io.read_counts` gives them).
    min_genes
        Drop cells with fewer genes detected.
    min_counts
        Drop cells with fewer counts.
    max_counts
        Drop cells with more counts (``None``: no upper limit).
    max_pct_mito
        Drop cells with a larger percentage of mitochondrial counts.
    min_cells
        Drop genes detected in fewer cells (genes detected in no kept cell are always dropped).
    n_top_genes
        Number of highly variable genes kept (Seurat flavour, see :func:`seurat_dispersions`).
    mito_prefixes
        Symbol prefixes of mitochondrial genes (see :func:`mito_genes`).
    preset
        Named option values (:data:`scdefr.options.PRESETS`) for the options this call does not give.

    Returns
    -------
    anndata.AnnData
        The kept cells and highly variable genes with ``X`` = log1p(total-count-normalised counts)
        (CSR float32), the raw counts in ``layers['counts']``, ``obs['size_factors']`` (library size /
        median, over all kept genes, as the ZINB loss expects), the HVG statistics in ``var`` and
        ``uns['scdefr_qc']`` (parameters, cells and genes after each filter, notes).

    Raises
    ------
    ScdefrError
        X is not raw counts, an option is out of range, or the filters leave no cell or no gene.

    Examples
    --------
    >>> from scdefr import pp
    >>> from scdefr.simulate import simulate_counts
    >>> adata = simulate_counts(n_cells=500, n_genes=300, n_clusters=3)
    >>> filtered = pp.qc(adata, n_top_genes=200)
    >>> filtered.n_vars, "counts" in filtered.layers
    (200, True)
    """
    options = QCOptions(
        min_genes=min_genes,
        min_counts=min_counts,
        max_counts=max_counts,
        max_pct_mito=max_pct_mito,
        min_cells=min_cells,
        n_top_genes=n_top_genes,
        mito_prefixes=tuple(mito_prefixes),
    )
    params = {name: value for name, value in options.to_dict().items() if name != "transpose"}
    params["mito_prefixes"] = list(mito_prefixes)
    params["preset"] = preset
    validate_raw_counts(adata.X, what="counts in X", uns=adata.uns)
    counts = row_readable(adata.X)  # once: a CSC input is converted for the metrics and the blocks alike
    _add_qc_metrics(adata, counts, mito_prefixes)
    n_mito = int(adata.var["mt"].sum())
    if n_mito == 0:
        logger.info("no mitochondrial genes (prefixes %s): the mito filter removes nothing", ", ".join(mito_prefixes))

    steps = {}
    order = []

    def record(step: str, threshold, cells: int, genes: int) -> None:
        order.append(step)
        steps[step] = {"threshold": threshold, "cells": cells, "genes": genes}
        logger.info("after %s (%s): %d cells x %d genes", step, threshold, cells, genes)
        if cells == 0:
            raise ScdefrError(
                f"all {adata.n_obs} cells were filtered out (last by {step} {threshold}); relax the QC thresholds"
            )
        if genes == 0:
            raise ScdefrError(f"all {adata.n_vars} genes were filtered out (by {step} {threshold})")

    keep = np.ones(adata.n_obs, dtype=bool)
    for step, mask in _cell_filters(adata.obs, params):
        keep &= mask
        record(step, params[step], int(keep.sum()), adata.n_vars)
    cells = np.flatnonzero(keep)

    # From here the counts are read in blocks of cells and only the kept genes are copied, once:
    # scanpy's filter-normalise-log1p holds about four times the input at its peak (benchmarks/qc_memory.py).
    # Genes seen in no kept cell carry no information whatever --min-cells says.
    detected = cells_detecting(counts, cells)
    genes = np.flatnonzero(detected >= max(min_cells, 1))
    record("min_cells", min_cells, cells.size, genes.size)
    metrics = cell_metrics(counts, cells, genes, adata.var["mt"].to_numpy()[genes])
    has_counts = metrics["n_counts"] > 0
    if not has_counts.all():  # possible only when the cell filters were switched off
        cells, metrics = cells[has_counts], metrics[has_counts]
        record("no_counts_left", 0, cells.size, genes.size)

    factors = normalisation_factors(metrics["n_counts"].to_numpy())
    log_blocks = (
        log_normalised(block[:, genes], factors[start : start + block.shape[0]])
        for start, block in cell_blocks(counts, cells)
    )
    stats = dispersions_of_blocks(log_blocks, (cells.size, genes.size), HVG_N_BINS)
    highly_variable = _highly_variable(stats, n_top_genes)
    record("highly_variable", int(highly_variable.sum()), cells.size, int(highly_variable.sum()))
    selected = genes[highly_variable]

    filtered = annotations_of(adata, cells, selected)
    filtered.layers["counts"] = submatrix(counts, cells, selected)
    filtered.X = log_normalised(filtered.layers["counts"], factors)
    filtered.uns["log1p"] = {"base": None}
    for column in metrics:
        filtered.obs[column] = metrics[column].to_numpy()
    filtered.obs["size_factors"] = filtered.obs["n_counts"] / np.median(filtered.obs["n_counts"])
    filtered.var["mt"] = adata.var["mt"].to_numpy()[selected]
    filtered.var["n_cells"] = detected[selected]  # cells without counts, dropped above, detect nothing
    filtered.uns["hvg"] = {"flavor": "seurat"}
    filtered.var["highly_variable"] = True
    for column in ("means", "dispersions", "dispersions_norm"):
        filtered.var[column] = stats[column].to_numpy()[highly_variable]
    filtered.var["dispersions_norm"] = filtered.var["dispersions_norm"].astype(np.float32)

    summary = {
        "input": {"cells": int(adata.n_obs), "genes": int(adata.n_vars)},
        "steps": steps,
        "step_order": order,
        "output": {"cells": int(filtered.n_obs), "genes": int(filtered.n_vars)},
        "mito_genes": n_mito,
        "median_counts": float(np.median(filtered.obs["n_counts"])),
    }
    notes = qc_notes(summary, n_top_genes)
    for note in notes:
        logger.info("QC %s", note)
    notes = [*_input_notes(adata.uns), *notes]
    filtered.uns["scdefr_qc"] = {"params": params, "summary": summary, "notes": notes}
    filtered.uns.pop("scdefr_input", None)
    if "scdefr_input" in adata.uns:
        filtered.uns["scdefr_qc"]["input"] = dict(adata.uns["scdefr_input"])
    return filtered


# How each step of the summary is said in the notes: (what a dropped cell/gene failed, unit of threshold).
_DROPPED_BY = {
    "min_genes": "fewer than {} genes detected (--min-genes)",
    "min_counts": "fewer than {} counts (--min-counts)",
    "max_counts": "more than {} counts (--max-counts)",
    "max_pct_mito": "more than {}% mitochondrial counts (--max-pct-mito)",
    "min_cells": "detected in fewer than {} cells (--min-cells) or in none",
    "no_counts_left": "no counts left in the kept genes",
    "highly_variable": "not among the {} most variable (--n-top-genes)",
}


def qc_notes(summary: dict, n_top_genes: int) -> list[str]:
    """What QC did to the data, in words: the cells and genes each filter dropped, and a gene
    selection smaller than asked for."""
    cells, genes = summary["input"]["cells"], summary["input"]["genes"]
    dropped_cells, dropped_genes = [], []
    for step in summary["step_order"]:
        counts = summary["steps"][step]
        reason = _DROPPED_BY[step].format(counts["threshold"])
        if counts["cells"] < cells:
            dropped_cells.append(f"{cells - counts['cells']} with {reason}")
        if counts["genes"] < genes:
            dropped_genes.append(f"{genes - counts['genes']} {reason}")
        cells, genes = counts["cells"], counts["genes"]
    output = summary["output"]
    notes = [
        f"kept {output['cells']} of {summary['input']['cells']} cells"
        + (f"; dropped {', '.join(dropped_cells)}" if dropped_cells else ""),
        f"kept {output['genes']} of {summary['input']['genes']} genes"
        + (f"; dropped {', '.join(dropped_genes)}" if dropped_genes else ""),
    ]
    if output["genes"] < n_top_genes:
        notes.append(f"{output['genes']} genes kept, fewer than --n-top-genes {n_top_genes}: too few genes passed")
    return notes


def _input_notes(uns) -> list[str]:
    """Notes the reader left on what it changed (duplicate gene names, float32 rounding)."""
    notes = uns.get("scdefr_input", {}).get("notes", [])
    return [str(note) for note in notes]


def _highly_variable(stats: pd.DataFrame, n_top_genes: int) -> np.ndarray:
    """Seurat-flavour selection from :func:`seurat_dispersions`' statistics: the ``n_top_genes``
    highest normalised dispersions (ties at the cut kept, as scanpy does); all genes if there are
    too few."""
    n_genes = len(stats)
    if n_genes <= n_top_genes:
        logger.info("%d genes <= --n-top-genes %d: keeping all", n_genes, n_top_genes)
        return np.ones(n_genes, dtype=bool)
    normalised = stats["dispersions_norm"].to_numpy()
    ranked = np.sort(normalised[~np.isnan(normalised)])[::-1]
    if ranked.size == 0:
        raise ScdefrError("no gene varies across the kept cells: no highly variable genes to select")
    cutoff = ranked[min(n_top_genes, ranked.size) - 1]
    return np.nan_to_num(normalised, nan=-np.inf) >= cutoff
