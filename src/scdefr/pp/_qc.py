"""QC metrics, cell and gene filters, size factors, normalisation and highly variable genes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

from ..errors import ScdefrError
from ..io import validate_raw_counts

logger = logging.getLogger(__name__)

MITO_PREFIXES = ("MT-", "mt-")
# Where gene symbols live when var_names are gene ids (Cell Ranger / nf-core/scrnaseq / CELLxGENE).
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "gene_name", "gene_names", "feature_name", "symbol")

# Defaults keep nearly every cell of published, already gene-cut datasets (their poorest cells have
# ~35 of ~2000 genes) while still dropping empty droplets of an unfiltered 10x matrix.
QC_DEFAULTS = {
    "min_genes": 20,
    "min_counts": 1,
    "max_counts": None,
    "max_pct_mito": 20.0,
    "min_cells": 3,
    "n_top_genes": 2000,
}
# Highly variable genes: scanpy's Seurat-flavour bins of the mean, over blocks of this many cells.
HVG_N_BINS = 20
HVG_BLOCK_CELLS = 8192


def mito_genes(adata: ad.AnnData, prefixes: Sequence[str] = MITO_PREFIXES) -> np.ndarray:
    """Boolean mask of mitochondrial genes, matched on gene symbols (a symbol column if var_names are ids)."""
    names = adata.var_names.astype(str)
    for column in SYMBOL_COLUMNS:
        if column in adata.var and adata.var[column].notna().any():
            names = pd.Index(adata.var[column].astype(str))
            break
    return np.asarray(names.str.startswith(tuple(prefixes)), dtype=bool)


def qc_metrics(adata: ad.AnnData, *, mito_prefixes: Sequence[str] = MITO_PREFIXES) -> None:
    """Add ``obs['n_counts', 'n_genes', 'pct_counts_mt']``, ``var['mt', 'n_cells']`` from the counts in X, in place."""
    adata.var["mt"] = mito_genes(adata, mito_prefixes)
    obs, var = sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=False)
    adata.obs["n_counts"] = obs["total_counts"].to_numpy(dtype=np.float64)
    adata.obs["n_genes"] = obs["n_genes_by_counts"].to_numpy(dtype=np.int64)
    # 0/0 for cells without counts: call it 0% so only the count filters judge those cells
    adata.obs["pct_counts_mt"] = np.nan_to_num(obs["pct_counts_mt"].to_numpy(dtype=np.float64), nan=0.0)
    adata.var["n_cells"] = var["n_cells_by_counts"].to_numpy(dtype=np.int64)


def _cell_filters(obs: pd.DataFrame, params: dict) -> list[tuple[str, np.ndarray]]:
    """(name, keep-mask) of every active cell filter, in the order they are applied and reported."""
    filters = []
    if params["min_genes"]:
        filters.append(("min_genes", obs["n_genes"].to_numpy() >= params["min_genes"]))
    if params["min_counts"]:
        filters.append(("min_counts", obs["n_counts"].to_numpy() >= params["min_counts"]))
    if params["max_counts"] is not None:
        filters.append(("max_counts", obs["n_counts"].to_numpy() <= params["max_counts"]))
    if params["max_pct_mito"] is not None:
        filters.append(("max_pct_mito", obs["pct_counts_mt"].to_numpy() <= params["max_pct_mito"]))
    return filters


def _check_params(params: dict) -> None:
    for key in ("min_genes", "min_counts", "min_cells"):
        if params[key] < 0:
            raise ScdefrError(f"--{key.replace('_', '-')} must be >= 0, got {params[key]}")
    if params["max_counts"] is not None and params["max_counts"] < max(params["min_counts"], 1):
        raise ScdefrError(f"--max-counts {params['max_counts']} is below --min-counts {params['min_counts']}")
    if params["max_pct_mito"] is not None and not 0 <= params["max_pct_mito"] <= 100:
        raise ScdefrError(f"--max-pct-mito must be between 0 and 100, got {params['max_pct_mito']}")
    if params["n_top_genes"] < 1:
        raise ScdefrError(f"--n-top-genes must be >= 1, got {params['n_top_genes']}")


def qc(
    adata: ad.AnnData,
    *,
    min_genes: int = QC_DEFAULTS["min_genes"],
    min_counts: int = QC_DEFAULTS["min_counts"],
    max_counts: int | None = QC_DEFAULTS["max_counts"],
    max_pct_mito: float | None = QC_DEFAULTS["max_pct_mito"],
    min_cells: int = QC_DEFAULTS["min_cells"],
    n_top_genes: int = QC_DEFAULTS["n_top_genes"],
    mito_prefixes: Sequence[str] = MITO_PREFIXES,
) -> ad.AnnData:
    """Filter, normalise and select genes; return a new AnnData following the qc contract.

    ``adata`` (raw counts in X) gains its QC metrics in place, so :func:`scdefr.pl.qc_plot` can show
    what the filters removed. The result holds the kept cells and highly variable genes with
    ``X`` = log1p(total-count-normalised counts) (CSR float32), the raw counts in ``layers['counts']``,
    ``obs['size_factors']`` (library size / median, over all kept genes, as the ZINB loss expects) and
    ``uns['scdefr_qc']`` (parameters and cells/genes after each filter). Other obs columns, labels
    included, are carried along untouched.
    """
    params = {
        "min_genes": min_genes,
        "min_counts": min_counts,
        "max_counts": max_counts,
        "max_pct_mito": max_pct_mito,
        "min_cells": min_cells,
        "n_top_genes": n_top_genes,
        "mito_prefixes": list(mito_prefixes),
    }
    _check_params(params)
    validate_raw_counts(adata.X, what="counts in X", uns=adata.uns)
    qc_metrics(adata, mito_prefixes=mito_prefixes)
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
    filtered = adata[keep].copy()
    filtered.X = sparse.csr_matrix(filtered.X, dtype=np.float32)  # dense or integer input from notebooks

    # Genes seen in no kept cell carry no information whatever --min-cells says.
    gene_keep, _ = sc.pp.filter_genes(filtered, min_cells=max(min_cells, 1), inplace=False)
    if not gene_keep.all():  # copies cost a cells x genes matrix each: none when nothing is removed
        filtered = filtered[:, gene_keep].copy()
    record("min_cells", min_cells, filtered.n_obs, filtered.n_vars)
    qc_metrics(filtered, mito_prefixes=mito_prefixes)
    has_counts = filtered.obs["n_counts"].to_numpy() > 0
    if not has_counts.all():  # possible only when the cell filters were switched off
        filtered = filtered[has_counts].copy()
        record("no_counts_left", 0, filtered.n_obs, filtered.n_vars)

    filtered.layers["counts"] = filtered.X.copy()
    filtered.obs["size_factors"] = filtered.obs["n_counts"] / np.median(filtered.obs["n_counts"])
    sc.pp.normalize_total(filtered)
    sc.pp.log1p(filtered)
    n_hvg = _select_highly_variable(filtered, n_top_genes)
    if n_hvg < filtered.n_vars:
        filtered = filtered[:, filtered.var["highly_variable"].to_numpy()].copy()
    record("highly_variable", n_hvg, filtered.n_obs, filtered.n_vars)

    filtered.X = sparse.csr_matrix(filtered.X, dtype=np.float32)
    summary = {
        "input": {"cells": int(adata.n_obs), "genes": int(adata.n_vars)},
        "steps": steps,
        "step_order": order,
        "output": {"cells": int(filtered.n_obs), "genes": int(filtered.n_vars)},
        "mito_genes": n_mito,
        "median_counts": float(np.median(filtered.obs["n_counts"])),
    }
    filtered.uns["scdefr_qc"] = {"params": params, "summary": summary}
    filtered.uns.pop("scdefr_input", None)
    if "scdefr_input" in adata.uns:
        filtered.uns["scdefr_qc"]["input"] = dict(adata.uns["scdefr_input"])
    return filtered


def _select_highly_variable(adata: ad.AnnData, n_top_genes: int) -> int:
    """Seurat-flavour dispersion ranking on the log data (as the paper); all genes if there are too few.

    The same statistics and selection as ``sc.pp.highly_variable_genes(flavor='seurat')``, with the
    genes' means and variances summed over blocks of cells: scanpy's copies the log matrix twice to
    take its expm1, which made the step's peak memory at 1M cells (BENCHMARKS.md, round 10).
    """
    stats = seurat_dispersions(adata.X, n_bins=HVG_N_BINS)
    if adata.n_vars <= n_top_genes:
        highly_variable = np.ones(adata.n_vars, dtype=bool)
        logger.info("%d genes <= --n-top-genes %d: keeping all", adata.n_vars, n_top_genes)
    else:
        normalised = stats["dispersions_norm"].to_numpy()
        ranked = np.sort(normalised[~np.isnan(normalised)])[::-1]
        if ranked.size == 0:
            raise ScdefrError("no gene varies across the kept cells: no highly variable genes to select")
        cutoff = ranked[min(n_top_genes, ranked.size) - 1]
        highly_variable = np.nan_to_num(normalised, nan=-np.inf) >= cutoff
    adata.uns["hvg"] = {"flavor": "seurat"}
    adata.var["highly_variable"] = highly_variable
    adata.var["means"] = stats["means"].to_numpy()
    adata.var["dispersions"] = stats["dispersions"].to_numpy()
    adata.var["dispersions_norm"] = stats["dispersions_norm"].to_numpy(dtype=np.float32)
    return int(highly_variable.sum())


def seurat_dispersions(X, *, n_bins: int = HVG_N_BINS, block_cells: int = HVG_BLOCK_CELLS) -> pd.DataFrame:
    """Per gene of log1p-normalised ``X``: log1p of the mean and log of the dispersion (variance / mean)
    of expm1(X), and the dispersion z-scored within ``n_bins`` equal-width bins of the mean (a bin
    with one gene gets 1), as Seurat's ``FindVariableGenes`` and scanpy's ``flavor='seurat'`` define them."""
    X = sparse.csr_matrix(X)
    n_cells, n_genes = X.shape
    total, squares = np.zeros(n_genes), np.zeros(n_genes)
    for start in range(0, n_cells, block_cells):
        block = X[start:start + block_cells]
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
