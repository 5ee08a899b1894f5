"""Seurat-flavour dispersion statistics of the genes, summed over blocks of cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from ._blocks import BLOCK_CELLS

# Highly variable genes: scanpy's Seurat-flavour bins of the mean.
HVG_N_BINS = 20


def seurat_dispersions(X, *, n_bins: int = HVG_N_BINS, block_cells: int = BLOCK_CELLS) -> pd.DataFrame:
    """Compute the Seurat-flavour dispersion statistics of each gene of log1p-normalised ``X``.

    The statistics are those of Seurat's ``FindVariableGenes`` and scanpy's ``flavor='seurat'``,
    summed over blocks of ``block_cells`` cells: scanpy's copies the log matrix twice.

    Parameters
    ----------
    X
        Log1p-normalised cells x genes matrix (dense or sparse).
    n_bins
        Number of equal-width bins of the mean within which the dispersion is z-scored.
    block_cells
        Cells read at a time.

    Returns
    -------
    pandas.DataFrame
        One row per gene: ``means`` (log1p of the mean of expm1(X)), ``dispersions`` (log of variance /
        mean) and ``dispersions_norm`` (the dispersion z-scored within its bin; a bin with one gene
        gets 1).
    """
    X = sparse.csr_matrix(X)
    blocks = (X[start : start + block_cells] for start in range(0, X.shape[0], block_cells))
    return dispersions_of_blocks(blocks, X.shape, n_bins)


def dispersions_of_blocks(log_blocks, shape: tuple[int, int], n_bins: int) -> pd.DataFrame:
    """:func:`seurat_dispersions` of the matrix whose rows come as ``log_blocks`` (CSR, in any order)."""
    n_cells, n_genes = shape
    total, squares = np.zeros(n_genes), np.zeros(n_genes)
    for block in log_blocks:
        values = np.expm1(block.data).astype(np.float64)  # expm1 in X's precision, as scanpy takes it
        total += np.bincount(block.indices, weights=values, minlength=n_genes)
        squares += np.bincount(block.indices, weights=values * values, minlength=n_genes)
    mean = total / n_cells
    variance = np.maximum(squares / n_cells - mean * mean, 0.0) * (n_cells / max(n_cells - 1, 1))
    mean[mean == 0] = 1e-12
    dispersion = variance / mean
    dispersion[dispersion == 0] = np.nan
    stats = pd.DataFrame({"means": np.log1p(mean), "dispersions": np.log(dispersion)})
    stats["mean_bin"] = pd.cut(stats["means"], bins=n_bins)
    per_bin = stats.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    single = per_bin["dev"].isnull()
    per_bin.loc[single, "dev"] = per_bin.loc[single, "avg"]
    per_bin.loc[single, "avg"] = 0
    per_bin = per_bin.loc[stats["mean_bin"]].set_index(stats.index)
    stats["dispersions_norm"] = (stats["dispersions"] - per_bin["avg"]) / per_bin["dev"]
    return stats.drop(columns="mean_bin")
