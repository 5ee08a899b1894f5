"""The cell graph the encoder propagates over: PCA, kNN (scanpy) and the normalised adjacency."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .._progress import Stages
from ..adjacency import normalized_adjacency, pattern
from ..errors import ScdefrError
from ..options import CommonOptions, GraphOptions, takes_preset

logger = logging.getLogger(__name__)

# Exact (brute-force) search up to this many cells: it finds the true neighbours and, below this size,
# takes less time than pynndescent's numba compilation in every new process; above, its quadratic cost wins.
EXACT_KNN_MAX_CELLS = 100_000
# scanpy's kNN transformer for each search method.
KNN_TRANSFORMERS = {"exact": "sklearn", "approx": "pynndescent"}


# scanpy's PCA (ARPACK, whose sparse products use one thread) up to this many cells; above, the same
# components from the genes' covariance summed over dense blocks of cells: BLAS on every thread, linear in the cells.
SCANPY_PCA_MAX_CELLS = 100_000
PCA_BLOCK_CELLS = 8192


def covariance_pca(adata: ad.AnnData, n_comps: int) -> None:
    """Compute the PCA of ``adata.X`` from the genes' covariance, written where and as ``sc.pp.pca`` writes it.

    Into ``obsm['X_pca']``, ``varm['PCs']`` and ``uns['pca']``. Exact, not randomised: the eigenvectors
    of the covariance of the (highly variable) genes, summed over blocks of cells, signed so that each
    component's largest loading is positive. Linear in the cells and on every BLAS thread;
    :func:`build_graph` uses it above :data:`SCANPY_PCA_MAX_CELLS` cells.

    Parameters
    ----------
    adata
        Log-normalised X (cells x genes, sparse or dense); ``var['highly_variable']``, if present, picks
        the genes. Changed in place.
    n_comps
        Number of principal components, at most the number of genes used.
    """
    mask = (
        adata.var["highly_variable"].to_numpy(bool) if "highly_variable" in adata.var else np.ones(adata.n_vars, bool)
    )
    X = sparse.csr_matrix(adata.X)[:, mask] if not mask.all() else sparse.csr_matrix(adata.X)
    n_cells = X.shape[0]
    mean = np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
    covariance = np.zeros((X.shape[1], X.shape[1]))
    for start in range(0, n_cells, PCA_BLOCK_CELLS):
        block = X[start : start + PCA_BLOCK_CELLS].toarray() - mean.astype(np.float32)  # centred: no cancellation
        covariance += block.T @ block
    covariance /= n_cells - 1
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:n_comps]
    variance, components = eigenvalues[order], eigenvectors[:, order]
    components *= np.sign(components[np.abs(components).argmax(axis=0), np.arange(n_comps)])
    adata.obsm["X_pca"] = (X @ components - mean @ components).astype(np.float32)
    loadings = np.zeros((adata.n_vars, n_comps))
    loadings[mask] = components
    adata.varm["PCs"] = loadings
    adata.uns["pca"] = {
        "params": {
            "zero_center": True,
            "use_highly_variable": "highly_variable" in adata.var,
            "mask_var": "highly_variable" if "highly_variable" in adata.var else None,
            "solver": "covariance",
        },
        "variance": variance,
        "variance_ratio": variance / np.trace(covariance),
    }


def auto_knn_method(n_cells: int) -> str:
    """Choose the kNN search for ``knn_method='auto'``: exact up to :data:`EXACT_KNN_MAX_CELLS` cells, else approximate.

    Below that size an exact search costs less than pynndescent's numba compilation in a new process; the
    export's UMAP, fitted on at most that many cells, then never pays that compilation.

    Parameters
    ----------
    n_cells
        Number of cells searched.

    Returns
    -------
    str
        ``'exact'`` or ``'approx'`` (pynndescent), a key of :data:`KNN_TRANSFORMERS`.
    """
    return "exact" if n_cells <= EXACT_KNN_MAX_CELLS else "approx"


def knn_binary(distances: sparse.spmatrix, n_neighbors: int) -> sparse.csr_matrix:
    """Build the binary kNN graph: each cell to its ``n_neighbors - 1`` nearest other cells (it counts itself).

    scanpy's ``obsp['distances']`` holds ``n_neighbors - 1`` neighbours per cell after an exact search
    but ``n_neighbors`` (plus a self entry) after pynndescent; taking the nearest ``n_neighbors - 1``
    gives both searches the paper's ``kneighbors_graph(k, include_self=True)``. Explicitly stored zero
    distances (duplicate cells) are kept as neighbours.

    Parameters
    ----------
    distances
        The kNN distances scanpy writes (``obsp['distances']``, cells x cells).
    n_neighbors
        Neighbours per cell, the cell itself included.

    Returns
    -------
    scipy.sparse.csr_matrix
        Cells x cells, float32: 1 from each cell to each of its nearest ``n_neighbors - 1`` other cells,
        no self-loops; not symmetric.
    """
    coo = sparse.coo_matrix(distances)
    other = coo.row != coo.col
    rows, cols, values = coo.row[other], coo.col[other], coo.data[other]
    order = np.lexsort((values, rows))  # by row, then distance; stable on ties
    rows, cols = rows[order], cols[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
    keep = rank < n_neighbors - 1
    return sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])), shape=distances.shape
    )


@takes_preset
def build_graph(
    adata: ad.AnnData,
    *,
    n_pcs: int = GraphOptions.n_pcs,
    n_neighbors: int = GraphOptions.n_neighbors,
    knn_method: str = GraphOptions.knn_method,
    graph_normalization: str = GraphOptions.graph_normalization,
    preset: str = CommonOptions.preset,
    seed: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Build the cell graph of the log-normalised X: PCA, kNN graph and the normalised adjacency (the graph contract).

    Parameters
    ----------
    adata
        Output of :func:`scdefr.pp.qc`: log-normalised X.
    n_pcs, n_neighbors, knn_method, graph_normalization
        See :class:`~scdefr.options.GraphOptions`. ``n_neighbors`` counts the cell itself, as scanpy and
        the paper's ``kneighbors_graph(include_self=True)`` do; ``knn_method='auto'`` searches exactly
        up to :data:`EXACT_KNN_MAX_CELLS` cells and with pynndescent above.
    preset
        Takes the graph options of this preset (:data:`scdefr.options.PRESETS`) that the call does not give.
    seed
        Seeds the PCA and the kNN search.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    anndata.AnnData or None
        With ``copy``, the AnnData with ``obsm['X_pca']``, ``obsp['distances']``,
        ``obsp['connectivities']``, ``obsp['scdefr_adjacency']`` and ``uns['scdefr_graph']``; else
        ``None``, and ``adata`` gains them.

    Raises
    ------
    ScdefrError
        An option is out of range, X holds NaN or infinite values, or there are too few cells or genes
        for the PCA or the neighbours.
    """
    options = GraphOptions(
        n_pcs=n_pcs, n_neighbors=n_neighbors, knn_method=knn_method, graph_normalization=graph_normalization
    )
    if copy:
        adata = adata.copy()
        build_graph(adata, **options.to_dict(), preset=preset, seed=seed)
        return adata
    if adata.n_obs <= n_neighbors:
        raise ScdefrError(
            f"only {adata.n_obs} cells, fewer than n_neighbors (--n-neighbors) {n_neighbors} + 1: lower it"
        )
    values = adata.X.data if sparse.issparse(adata.X) else np.asarray(adata.X)
    if not np.isfinite(values).all():
        raise ScdefrError("X has NaN or infinite values; run scdefr qc on raw counts first")

    # arpack needs fewer components than either dimension.
    n_comps = min(n_pcs, adata.n_obs - 1, adata.n_vars - 1)
    if n_comps < 1:
        raise ScdefrError(f"cannot compute PCA of {adata.n_obs} cells x {adata.n_vars} genes")
    if n_comps < n_pcs:
        logger.info("--n-pcs %d capped at %d for %d cells x %d genes", n_pcs, n_comps, adata.n_obs, adata.n_vars)
    covariance = adata.n_obs > SCANPY_PCA_MAX_CELLS
    logger.info(
        "PCA of %d cells x %d genes: %d components (%s)",
        adata.n_obs,
        adata.n_vars,
        n_comps,
        "genes' covariance" if covariance else "scanpy, ARPACK",
    )
    method = auto_knn_method(adata.n_obs) if knn_method == "auto" else knn_method
    with Stages("graph", ["PCA", "kNN search and connectivities", "normalised adjacency"]) as stage:
        stage("PCA")
        if covariance:
            covariance_pca(adata, n_comps)
        else:
            sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
        stage("kNN search and connectivities")
        logger.info(
            "kNN graph: %d neighbours (self included), %s search, %d PCs; scanpy's connectivities (numba compiles "
            "them on first use in a process, about 20 s)",
            n_neighbors,
            method,
            n_comps,
        )
        sc.pp.neighbors(
            adata, n_neighbors=n_neighbors, use_rep="X_pca", transformer=KNN_TRANSFORMERS[method], random_state=seed
        )
        stage("normalised adjacency")
        adjacency = normalized_adjacency(knn_binary(adata.obsp["distances"], n_neighbors), graph_normalization)
    adata.obsp["scdefr_adjacency"] = adjacency
    undirected = pattern(adjacency, symmetrise=True)  # the statistics describe the graph either way
    degree = np.diff(undirected.indptr) - 1  # neighbours in the symmetrised graph, self-loop not counted
    n_components, component = connected_components(undirected, directed=False)
    smallest = int(np.bincount(component).min())
    if n_components > 1:
        logger.warning(
            "the kNN graph has %d connected components (smallest: %d cells); no message passes between them",
            n_components,
            smallest,
        )
    adata.uns["scdefr_graph"] = {
        "params": {
            "n_pcs": n_comps,
            "n_pcs_requested": n_pcs,
            "n_neighbors": n_neighbors,
            "knn_method": knn_method,
            "knn_method_used": method,
            "graph_normalization": graph_normalization,
            "preset": preset,
            "seed": seed,
        },
        "n_edges": int(degree.sum() // 2),
        "degree": {
            "min": int(degree.min()),
            "median": float(np.median(degree)),
            "mean": float(degree.mean()),
            "max": int(degree.max()),
        },
        "n_connected_components": int(n_components),
        "smallest_component": smallest,
    }
    return None
