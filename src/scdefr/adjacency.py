"""The cell graph's operators, in one place: every user builds its matrix here.

The graph step stores the normalised adjacency ``D^-1/2 (A + I) D^-1/2`` of the binary kNN graph,
symmetrised by default (``graph_normalization='symmetric'``) or kept as searched, each cell to its
neighbours (``'directed'``, the paper's, D the out-degrees). Training batches re-normalise the subgraph
of their cells the same way; the graph encoder propagates over that matrix, or over the in-degree
normalised transpose for a directed graph (:func:`propagation`); the read-out averages soft
assignments over random-walk steps ``D^-1 (A + I)``. All are scipy CSR, linear in the edges.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def pattern(adjacency, *, symmetrise: bool = False, self_loops: bool = True) -> sparse.csr_matrix:
    """The binary pattern of ``adjacency`` (weights dropped), optionally made symmetric (an edge if
    either way), with a self-loop on every cell."""
    edges = sparse.coo_matrix(adjacency)
    kept = (edges.row != edges.col) & (edges.data != 0)
    ones = np.ones(int(kept.sum()), dtype=np.float32)
    binary = sparse.csr_matrix((ones, (edges.row[kept], edges.col[kept])), shape=edges.shape)
    if symmetrise:
        binary = binary.maximum(binary.T).tocsr()
    if self_loops:
        binary = (binary + sparse.identity(binary.shape[0], dtype=np.float32, format="csr")).tocsr()
    binary.sort_indices()
    return binary


def symmetric_normalized(binary: sparse.spmatrix) -> sparse.csr_matrix:
    """``D^-1/2 P D^-1/2`` of a pattern ``P`` with a self-loop on every cell (so no degree is 0), D its
    row sums (the out-degrees when ``P`` is directed)."""
    inv_sqrt_degree = sparse.diags(1.0 / np.sqrt(np.asarray(binary.sum(axis=1)).ravel()))
    normalized = (inv_sqrt_degree @ binary @ inv_sqrt_degree).tocsr().astype(np.float32)
    normalized.sort_indices()
    return normalized


def random_walk(binary: sparse.spmatrix) -> sparse.csr_matrix:
    """``D^-1 P``: each row the mean over the cell's neighbours (itself included), in float64 so that
    repeated averaging adds no rounding."""
    degree = np.asarray(binary.sum(axis=1), dtype=np.float32).ravel()
    return (sparse.diags(1.0 / degree) @ binary.astype(np.float64)).tocsr()


# PyG's gcn_norm computes the same matrix, but on torch tensors: the graph step runs in an image without torch.
def normalized_adjacency(knn: sparse.spmatrix, normalization: str = "symmetric") -> sparse.csr_matrix:
    """``D^-1/2 (A + I) D^-1/2`` where ``A`` is the binary kNN graph ``knn`` (row i: cell i's neighbours),
    symmetrised (edge if either way) for ``'symmetric'``, as it is for ``'directed'`` (the paper's
    ``norm_adj`` of its ``kneighbors_graph``, D the out-degrees)."""
    return symmetric_normalized(pattern(knn, symmetrise=normalization == "symmetric"))


def propagation(adjacency: sparse.csr_matrix, normalization: str) -> sparse.csr_matrix:
    """The matrix the graph encoder's TAGConv propagates over: ``adjacency`` itself when symmetric;
    for a directed graph, what PyG's TAGConv (``gcn_norm`` without added self-loops) makes of the
    paper's edge list: messages flow from each cell to its neighbours, ``D_in^-1/2 P^T D_in^-1/2``
    with ``P`` the pattern of ``adjacency`` and ``D_in`` its column sums."""
    if normalization == "symmetric":
        return adjacency
    return symmetric_normalized(pattern(adjacency).T.tocsr())


def subgraph_adjacency(adjacency: sparse.csr_matrix, cells: np.ndarray) -> sparse.csr_matrix:
    """The normalised adjacency of the subgraph that ``cells`` induce, re-normalised over its own edges
    (by its row sums: a directed graph stays directed)."""
    return symmetric_normalized(pattern(adjacency[cells][:, cells]))


def smooth(values: np.ndarray, adjacency, steps: int) -> np.ndarray:
    """``values`` (cells x d) averaged ``steps`` times over each cell's neighbourhood, itself included;
    rows that sum to 1 keep summing to 1. ``steps`` 0 returns them unchanged."""
    values = np.asarray(values, dtype=np.float32)
    if steps == 0:
        return values
    walk = random_walk(pattern(adjacency))
    for _ in range(steps):
        values = walk @ values
    return np.asarray(values, dtype=np.float32)
