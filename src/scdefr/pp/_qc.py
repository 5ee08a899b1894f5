"""QC metrics, cell and gene filters, size factors, normalisation and highly variable genes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from ..errors import ScdefrError
from ..io import validate_raw_counts
from ..options import CommonOptions, QCOptions, takes_preset

logger = logging.getLogger(__name__)

# Where gene symbols live when var_names are gene ids (Cell Ranger / nf-core/scrnaseq / CELLxGENE).
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "gene_name", "gene_names", "feature_name", "symbol")

# Highly variable genes: scanpy's Seurat-flavour bins of the mean.
HVG_N_BINS = 20
# qc reads the counts this many cells at a time: its working memory beyond its output is one block.
BLOCK_CELLS = 8192


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
    _add_qc_metrics(adata, _row_readable(adata.X), mito_prefixes)


def _add_qc_metrics(adata: ad.AnnData, counts, mito_prefixes: Sequence[str]) -> None:
    """:func:`qc_metrics` from ``counts``, X in a form whose rows are cheap to take (:func:`_row_readable`)."""
    adata.var["mt"] = mito_genes(adata, mito_prefixes)
    cells = np.arange(adata.n_obs)
    for column, values in _cell_metrics(counts, cells, None, adata.var["mt"].to_numpy()).items():
        adata.obs[column] = values.to_numpy()
    adata.var["n_cells"] = _cells_detecting(counts, cells)


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
    counts = _row_readable(adata.X)  # once: a CSC input is converted for the metrics and the blocks alike
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
    detected = _cells_detecting(counts, cells)
    genes = np.flatnonzero(detected >= max(min_cells, 1))
    record("min_cells", min_cells, cells.size, genes.size)
    metrics = _cell_metrics(counts, cells, genes, adata.var["mt"].to_numpy()[genes])
    has_counts = metrics["n_counts"] > 0
    if not has_counts.all():  # possible only when the cell filters were switched off
        cells, metrics = cells[has_counts], metrics[has_counts]
        record("no_counts_left", 0, cells.size, genes.size)

    factors = _normalisation_factors(metrics["n_counts"].to_numpy())
    log_blocks = (
        _log_normalised(block[:, genes], factors[start : start + block.shape[0]])
        for start, block in _blocks(counts, cells)
    )
    stats = _dispersions_of_blocks(log_blocks, (cells.size, genes.size), HVG_N_BINS)
    highly_variable = _highly_variable(stats, n_top_genes)
    record("highly_variable", int(highly_variable.sum()), cells.size, int(highly_variable.sum()))
    selected = genes[highly_variable]

    filtered = _annotations(adata, cells, selected)
    filtered.layers["counts"] = _select(counts, cells, selected)
    filtered.X = _log_normalised(filtered.layers["counts"], factors)
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


def _row_readable(X):
    """X in a form whose rows are cheap to take: CSR or dense as they are, other sparse formats as CSR."""
    if sparse.issparse(X) and X.format != "csr":
        return sparse.csr_matrix(X)
    return X


def _blocks(X, cells: np.ndarray):
    """``(offset, rows)``: the rows ``cells`` of X as float32 CSR without stored zeros, BLOCK_CELLS at a time."""
    for start in range(0, cells.size, BLOCK_CELLS):
        block = sparse.csr_matrix(X[cells[start : start + BLOCK_CELLS]], dtype=np.float32)
        block.eliminate_zeros()
        yield start, block


def _cells_detecting(X, cells: np.ndarray) -> np.ndarray:
    """Per gene, how many of ``cells`` have a non-zero count (sc.pp.filter_genes' ``n_cells``)."""
    detected = np.zeros(X.shape[1], dtype=np.int64)
    for _, block in _blocks(X, cells):
        detected += np.bincount(block.indices, minlength=X.shape[1])
    return detected


def _cell_metrics(X, cells: np.ndarray, genes: np.ndarray | None, mito: np.ndarray) -> pd.DataFrame:
    """``n_counts``, ``n_genes`` and ``pct_counts_mt`` (0 for cells without counts, so only the count
    filters judge those) of ``cells`` over ``genes`` (all when ``None``; ``mito``: which of them are
    mitochondrial)."""
    n_counts, n_genes, mito_counts = (np.zeros(cells.size) for _ in range(3))
    for start, block in _blocks(X, cells):
        block = block if genes is None else block[:, genes]
        rows = slice(start, start + block.shape[0])
        n_counts[rows] = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
        n_genes[rows] = np.diff(block.indptr)
        mito_counts[rows] = np.asarray(block[:, mito].sum(axis=1, dtype=np.float64)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        pct_mito = np.nan_to_num(mito_counts / n_counts * 100, nan=0.0)
    return pd.DataFrame({"n_counts": n_counts, "n_genes": n_genes.astype(np.int64), "pct_counts_mt": pct_mito})


def _normalisation_factors(n_counts: np.ndarray) -> np.ndarray:
    """Each cell's counts over the median library, in float32 as sc.pp.normalize_total takes them
    for float32 counts (so X is bit for bit what normalize_total and log1p would give)."""
    totals = n_counts.astype(np.float32)
    return totals / np.median(totals)


def _log_normalised(counts: sparse.csr_matrix, factors: np.ndarray) -> sparse.csr_matrix:
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


def _select(X, cells: np.ndarray, genes: np.ndarray) -> sparse.csr_matrix:
    """Float32 CSR of X's ``cells`` x ``genes``, filled block by block into arrays sized by a first
    pass: ``X[cells][:, genes]`` would first copy every gene of the kept cells, and stacking the
    blocks would hold them beside the result."""
    indptr = np.zeros(cells.size + 1, dtype=np.int64)
    for start, block in _blocks(X, cells):
        indptr[start + 1 : start + 1 + block.shape[0]] = np.diff(block[:, genes].indptr)
    np.cumsum(indptr, out=indptr)
    index_dtype = np.int32 if indptr[-1] <= np.iinfo(np.int32).max else np.int64
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=index_dtype)
    for start, block in _blocks(X, cells):
        selected = block[:, genes]
        values = slice(indptr[start], indptr[start + selected.shape[0]])
        data[values], indices[values] = selected.data, selected.indices
    return sparse.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(cells.size, genes.size))


def _annotations(adata: ad.AnnData, cells: np.ndarray, genes: np.ndarray) -> ad.AnnData:
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
    return _dispersions_of_blocks(blocks, X.shape, n_bins)


def _dispersions_of_blocks(log_blocks, shape: tuple[int, int], n_bins: int) -> pd.DataFrame:
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
