"""Counts read a block of cells at a time, so qc's working memory beyond its output is one block."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

# qc reads the counts this many cells at a time: its working memory beyond its output is one block.
BLOCK_CELLS = 8192


def row_readable(X):
    """X in a form whose rows are cheap to take: CSR or dense as they are, other sparse formats as CSR."""
    if sparse.issparse(X) and X.format != "csr":
        return sparse.csr_matrix(X)
    return X


def cell_blocks(X, cells: np.ndarray):
    """``(offset, rows)``: the rows ``cells`` of X as float32 CSR without stored zeros, BLOCK_CELLS at a time."""
    for start in range(0, cells.size, BLOCK_CELLS):
        block = sparse.csr_matrix(X[cells[start : start + BLOCK_CELLS]], dtype=np.float32)
        block.eliminate_zeros()
        yield start, block


def cells_detecting(X, cells: np.ndarray) -> np.ndarray:
    """Per gene, how many of ``cells`` have a non-zero count (sc.pp.filter_genes' ``n_cells``)."""
    detected = np.zeros(X.shape[1], dtype=np.int64)
    for _, block in cell_blocks(X, cells):
        detected += np.bincount(block.indices, minlength=X.shape[1])
    return detected


def cell_metrics(X, cells: np.ndarray, genes: np.ndarray | None, mito: np.ndarray) -> pd.DataFrame:
    """``n_counts``, ``n_genes`` and ``pct_counts_mt`` (0 for cells without counts, so only the count
    filters judge those) of ``cells`` over ``genes`` (all when ``None``; ``mito``: which of them are
    mitochondrial)."""
    n_counts, n_genes, mito_counts = (np.zeros(cells.size) for _ in range(3))
    for start, block in cell_blocks(X, cells):
        block = block if genes is None else block[:, genes]
        rows = slice(start, start + block.shape[0])
        n_counts[rows] = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
        n_genes[rows] = np.diff(block.indptr)
        mito_counts[rows] = np.asarray(block[:, mito].sum(axis=1, dtype=np.float64)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        pct_mito = np.nan_to_num(mito_counts / n_counts * 100, nan=0.0)
    return pd.DataFrame({"n_counts": n_counts, "n_genes": n_genes.astype(np.int64), "pct_counts_mt": pct_mito})


def normalisation_factors(n_counts: np.ndarray) -> np.ndarray:
    """Each cell's counts over the median library, in float32 as sc.pp.normalize_total takes them
    for float32 counts (so X is bit for bit what normalize_total and log1p would give)."""
    totals = n_counts.astype(np.float32)
    return totals / np.median(totals)


def log_normalised(counts: sparse.csr_matrix, factors: np.ndarray) -> sparse.csr_matrix:
    """log1p(counts / factor of their cell), a new float32 CSR matrix, computed BLOCK_CELLS rows at a
    time so that no temporary is the size of the matrix."""
    data = np.empty_like(counts.data)
    indptr = counts.indptr
    for start in range(0, counts.shape[0], BLOCK_CELLS):
        stop = min(start + BLOCK_CELLS, counts.shape[0])
        values = slice(indptr[start], indptr[stop])
        row_factors = np.repeat(factors[start:stop], np.diff(indptr[start : stop + 1]))
        np.log1p(counts.data[values] / row_factors, out=data[values])
    return sparse.csr_matrix((data, counts.indices.copy(), indptr.copy()), shape=counts.shape)


def submatrix(X, cells: np.ndarray, genes: np.ndarray) -> sparse.csr_matrix:
    """Float32 CSR of X's ``cells`` x ``genes``, filled block by block into arrays sized by a first
    pass: ``X[cells][:, genes]`` would first copy every gene of the kept cells, and stacking the
    blocks would hold them beside the result."""
    indptr = np.zeros(cells.size + 1, dtype=np.int64)
    for start, block in cell_blocks(X, cells):
        indptr[start + 1 : start + 1 + block.shape[0]] = np.diff(block[:, genes].indptr)
    np.cumsum(indptr, out=indptr)
    index_dtype = np.int32 if indptr[-1] <= np.iinfo(np.int32).max else np.int64
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=index_dtype)
    for start, block in cell_blocks(X, cells):
        selected = block[:, genes]
        values = slice(indptr[start], indptr[start + selected.shape[0]])
        data[values], indices[values] = selected.data, selected.indices
    return sparse.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(cells.size, genes.size))


def annotations_of(adata: ad.AnnData, cells: np.ndarray, genes: np.ndarray) -> ad.AnnData:
    """A copy of everything ``adata`` holds of ``cells`` x ``genes`` except X (obs, var, uns, obsm,
    layers, ...), as ``adata[cells, genes].copy()`` would give it, without copying X."""
    shell = ad.AnnData(
        obs=adata.obs,
        var=adata.var,
        uns=adata.uns,
        obsm=dict(adata.obsm),
        varm=dict(adata.varm),
        obsp=dict(adata.obsp),
        varp=dict(adata.varp),
        layers=dict(adata.layers),
        raw=adata.raw,
    )
    return shell[cells, genes].copy()
