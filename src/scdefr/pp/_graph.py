"""The cell graph the encoder propagates over: PCA, kNN (scanpy) and the symmetric-normalised adjacency."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from ..errors import ScdefrError

logger = logging.getLogger(__name__)

KNN_METHODS = ("auto", "exact", "approx")
# Exact (brute-force) search up to this many cells. It finds the true neighbours, where pynndescent
# recalled 91% of them on 8,617 cells. And it is faster there: pynndescent compiles with numba in
# every new process, about 45 s on 2 cores. On 100,000 cells x 50 PCs with 2 threads, exact search
# took 22 s, and pynndescent 4 s plus that compilation. Above this size the quadratic cost of brute
# force takes over (BENCHMARKS.md, round 7).
EXACT_KNN_MAX_CELLS = 100_000
# scanpy's kNN transformer for each search method.
KNN_TRANSFORMERS = {"exact": "sklearn", "approx": "pynndescent"}


# scanpy's PCA (ARPACK on the sparse matrix, whose sparse products use one thread) up to this many
# cells. Above, the PCA comes from the genes x genes covariance, summed over dense blocks of cells
# (BLAS, every thread): the same components (correlation 1.0 on 98,714 cells), 11.5 s against 56.7 s
# there on one thread, and linear in the cells. Smaller inputs keep scanpy's PCA, so no earlier
# result moves (BENCHMARKS.md, round 10).
SCANPY_PCA_MAX_CELLS = 100_000
PCA_BLOCK_CELLS = 8192


def covariance_pca(adata: ad.AnnData, n_comps: int) -> None:
    """PCA of ``adata.X`` into ``obsm['X_pca']``, ``varm['PCs']`` and ``uns['pca']``, as ``sc.pp.pca`` writes them.

    Exact, not randomised: the eigenvectors of the covariance of the (highly variable) genes, signed
    so that each component's largest loading is positive.
    """
    mask = adata.var["highly_variable"].to_numpy(bool) if "highly_variable" in adata.var else np.ones(adata.n_vars, bool)
    X = sparse.csr_matrix(adata.X)[:, mask] if not mask.all() else sparse.csr_matrix(adata.X)
    n_cells = X.shape[0]
    mean = np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
    covariance = np.zeros((X.shape[1], X.shape[1]))
    for start in range(0, n_cells, PCA_BLOCK_CELLS):
        block = X[start:start + PCA_BLOCK_CELLS].toarray() - mean.astype(np.float32)  # centred: no cancellation
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
        "params": {"zero_center": True, "use_highly_variable": "highly_variable" in adata.var,
                   "mask_var": "highly_variable" if "highly_variable" in adata.var else None, "solver": "covariance"},
        "variance": variance,
        "variance_ratio": variance / np.trace(covariance),
    }


def auto_knn_method(n_cells: int) -> str:
    """``exact`` up to :data:`EXACT_KNN_MAX_CELLS` cells, ``approx`` (pynndescent) above: the export's
    UMAP, fitted on at most that many cells, then never pays pynndescent's compilation."""
    return "exact" if n_cells <= EXACT_KNN_MAX_CELLS else "approx"


def knn_binary(distances: sparse.spmatrix, n_neighbors: int) -> sparse.csr_matrix:
    """Binary kNN graph: each cell's ``n_neighbors - 1`` nearest other cells (so ``n_neighbors`` counts itself).

    scanpy's ``obsp['distances']`` holds ``n_neighbors - 1`` neighbours per cell after an exact search
    but ``n_neighbors`` (plus a self entry) after pynndescent; taking the nearest ``n_neighbors - 1``
    gives both searches the paper's ``kneighbors_graph(k, include_self=True)``. Explicitly stored zero
    distances (duplicate cells) are kept as neighbours.
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


def normalized_adjacency(knn: sparse.spmatrix) -> sparse.csr_matrix:
    """``D^-1/2 (A + I) D^-1/2`` where ``A`` is the binary kNN graph ``knn`` symmetrised (edge if either way)."""
    binary = sparse.csr_matrix(knn, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    binary.setdiag(0)
    binary.eliminate_zeros()
    binary = binary.maximum(binary.T).tocsr()
    with_self = binary + sparse.identity(binary.shape[0], dtype=np.float32, format="csr")
    inv_sqrt_degree = sparse.diags(1.0 / np.sqrt(np.asarray(with_self.sum(axis=1)).ravel()))
    adjacency = (inv_sqrt_degree @ with_self @ inv_sqrt_degree).tocsr().astype(np.float32)
    adjacency.sort_indices()
    return adjacency


def build_graph(
    adata: ad.AnnData,
    *,
    n_pcs: int = 50,
    n_neighbors: int = 10,
    knn_method: str = "auto",
    seed: int = 0,
) -> None:
    """PCA, kNN graph and ``obsp['scdefr_adjacency']`` of the log-normalised X, in place (graph contract).

    ``n_neighbors`` counts the cell itself, as scanpy and the paper's ``kneighbors_graph(include_self=True)``
    do. ``knn_method='auto'`` searches exactly up to :data:`EXACT_KNN_MAX_CELLS` cells and with
    pynndescent above; both are seeded by ``seed``.
    """
    if knn_method not in KNN_METHODS:
        raise ScdefrError(f"--knn-method must be one of {', '.join(KNN_METHODS)}, got {knn_method!r}")
    if n_neighbors < 2:
        raise ScdefrError(f"--n-neighbors must be >= 2 (it counts the cell itself), got {n_neighbors}")
    if n_pcs < 1:
        raise ScdefrError(f"--n-pcs must be >= 1, got {n_pcs}")
    if adata.n_obs <= n_neighbors:
        raise ScdefrError(f"only {adata.n_obs} cells, fewer than --n-neighbors {n_neighbors} + 1; lower --n-neighbors")
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
    logger.info("PCA of %d cells x %d genes: %d components (%s)", adata.n_obs, adata.n_vars, n_comps,
                "genes' covariance" if covariance else "scanpy, ARPACK")
    if covariance:
        covariance_pca(adata, n_comps)
    else:
        sc.pp.pca(adata, n_comps=n_comps, random_state=seed)

    method = auto_knn_method(adata.n_obs) if knn_method == "auto" else knn_method
    logger.info("kNN graph: %d neighbours (self included), %s search, %d PCs", n_neighbors, method, n_comps)
    sc.pp.neighbors(
        adata,
        n_neighbors=n_neighbors,
        use_rep="X_pca",
        transformer=KNN_TRANSFORMERS[method],
        random_state=seed,
    )

    adjacency = normalized_adjacency(knn_binary(adata.obsp["distances"], n_neighbors))
    adata.obsp["scdefr_adjacency"] = adjacency
    degree = np.diff(adjacency.indptr) - 1  # neighbours in the symmetrised graph, self-loop not counted
    n_components, component = connected_components(adjacency, directed=False)
    smallest = int(np.bincount(component).min())
    if n_components > 1:
        logger.warning("the kNN graph has %d connected components (smallest: %d cells); no message passes between "
                       "them", n_components, smallest)
    adata.uns["scdefr_graph"] = {
        "params": {"n_pcs": n_comps, "n_pcs_requested": n_pcs, "n_neighbors": n_neighbors,
                   "knn_method": knn_method, "knn_method_used": method, "seed": seed},
        "n_edges": int(degree.sum() // 2),
        "degree": {"min": int(degree.min()), "median": float(np.median(degree)),
                   "mean": float(degree.mean()), "max": int(degree.max())},
        "n_connected_components": int(n_components),
        "smallest_component": smallest,
    }
