"""The data layer: what training reads from a graph AnnData, and the batches it steps over.

:class:`CellGraph` holds the validated arrays of one graph h5ad (see docs/architecture.md).
:func:`make_batch` turns some or all of its cells into tensors on a device. Mini-batches follow
Cluster-GCN (:func:`partition_cells`): the cells are partitioned once by KMeans on their PCA
coordinates into parts of about a quarter batch, and each epoch groups the shuffled parts four at a
time. A batch sees the subgraph its cells induce, re-normalised over the kept edges; edges between
batches are dropped for that step, a small loss when the parts follow the graph's communities.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .adjacency import propagation, subgraph_adjacency
from .errors import ScdefrError

# Full-batch training up to this many cells; above it batches of AUTO_BATCH_SIZE cells. Memory is
# dominated by cells x genes activations (ZINB terms, about 1 GB per 4,000 cells at 2,000 genes).
AUTO_FULL_BATCH_MAX_CELLS = 5_000
AUTO_BATCH_SIZE = 2_048
PARTS_PER_BATCH = 4
# A flat KMeans into P parts is quadratic in the cells (P grows with them): two levels above this many.
FLAT_PARTITION_MAX_PARTS = 128
# The encoders see each gene centred and scaled, clipped at this many standard deviations (sc.pp.scale).
SCALE_CLIP = 10.0


def resolve_batch_size(batch_size: int | str, n_cells: int) -> int:
    """0 means full batch; ``'auto'`` is full batch up to AUTO_FULL_BATCH_MAX_CELLS cells."""
    if batch_size == "auto":
        batch_size = 0 if n_cells <= AUTO_FULL_BATCH_MAX_CELLS else AUTO_BATCH_SIZE
    return 0 if batch_size >= n_cells else batch_size


@dataclass
class CellGraph:
    """The arrays training reads from a graph h5ad, validated."""

    x: sp.csr_matrix | np.ndarray
    target: sp.csr_matrix | np.ndarray
    size_factors: np.ndarray
    adjacency: sp.csr_matrix
    pca: np.ndarray | None = None
    # How the graph step normalised the adjacency (uns['scdefr_graph']); a directed graph's encoder
    # propagates over another matrix (scdefr.adjacency.propagation).
    normalization: str = "symmetric"
    # Per-gene centre and scale of X for the encoders (None: X as it is); applied batch by batch so a
    # sparse X stays sparse in memory.
    x_centre: np.ndarray | None = None
    x_scale: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        return self.x.shape[0]

    @property
    def n_genes(self) -> int:
        return self.x.shape[1]

    @classmethod
    def from_anndata(cls, adata, zinb_form: str = "counts", input_scaling: str = "scale") -> CellGraph:
        """Take X, the ZINB target (``layers['counts']``, or X itself for the paper's form), size
        factors, ``obsp['scdefr_adjacency']`` and its normalisation (symmetric when ``uns['scdefr_graph']``
        does not say); refuse anything missing, non-finite or misshapen.

        ``input_scaling='scale'`` standardises each gene of X for the encoders: uncentred, the
        normalised propagation of the graph encoder mostly carries each cell's degree times the mean
        profile, and training starts from an embedding without cell-type structure.
        """
        n_cells, n_genes = adata.shape
        if n_cells < 2 or n_genes < 1:
            raise ScdefrError(f"input has {n_cells} cells and {n_genes} genes: nothing to train on")
        if "scdefr_adjacency" not in adata.obsp:
            raise ScdefrError("input has no obsp['scdefr_adjacency']: run 'scdefr graph' on it first")
        x = _as_matrix(adata.X, "X")
        if zinb_form == "counts":
            if "counts" not in adata.layers:
                raise ScdefrError("input has no layers['counts'] (raw counts for the ZINB loss): run 'scdefr qc' first")
            if "size_factors" not in adata.obs:
                raise ScdefrError("input has no obs['size_factors']: run 'scdefr qc' first")
            target = _as_matrix(adata.layers["counts"], "layers['counts']")
            if _min_value(target) < 0:
                raise ScdefrError("layers['counts'] has negative values: it must hold raw counts")
            size_factors = np.asarray(adata.obs["size_factors"], dtype=np.float32)
            if not np.all(np.isfinite(size_factors)) or np.any(size_factors <= 0):
                raise ScdefrError("obs['size_factors'] must be finite and positive for every cell")
        else:
            target = x
            if _min_value(target) < 0:
                raise ScdefrError("X has negative values: the paper's ZINB form needs log-normalised, non-negative X")
            size_factors = np.ones(n_cells, dtype=np.float32)
        adjacency = sp.csr_matrix(adata.obsp["scdefr_adjacency"], dtype=np.float32)
        if adjacency.shape != (n_cells, n_cells):
            raise ScdefrError(f"obsp['scdefr_adjacency'] is {adjacency.shape}, expected ({n_cells}, {n_cells})")
        if not np.all(np.isfinite(adjacency.data)):
            raise ScdefrError("obsp['scdefr_adjacency'] has NaN or infinite values")
        adjacency.eliminate_zeros()
        pca = np.asarray(adata.obsm["X_pca"], dtype=np.float32) if "X_pca" in adata.obsm else None
        normalization = adata.uns.get("scdefr_graph", {}).get("params", {}).get("graph_normalization", "symmetric")
        graph = cls(
            x=x, target=target, size_factors=size_factors, adjacency=adjacency, pca=pca, normalization=normalization
        )
        if input_scaling == "scale":
            graph.x_centre, graph.x_scale = gene_centre_and_scale(x)
        return graph

    def encoder_input(self, cells: np.ndarray | None) -> np.ndarray:
        """Dense X of ``cells`` (all when ``None``) as the encoders see it."""
        rows = _dense_rows(self.x, cells)
        if self.x_centre is None:
            return rows
        return np.clip((rows - self.x_centre) / self.x_scale, -SCALE_CLIP, SCALE_CLIP)


def gene_centre_and_scale(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each gene over cells (a constant gene gets scale 1, as in sc.pp.scale)."""
    n_cells = x.shape[0]
    mean = np.asarray(x.sum(axis=0, dtype=np.float64)).ravel() / n_cells
    if sp.issparse(x):
        squares = np.asarray(x.multiply(x).sum(axis=0, dtype=np.float64)).ravel()
    else:
        squares = np.einsum("ij,ij->j", x, x, dtype=np.float64)
    variance = (squares / n_cells - mean**2) * n_cells / (n_cells - 1)  # unbiased, as sc.pp.scale
    scale = np.sqrt(np.clip(variance, 0.0, None))
    scale[scale == 0] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def _as_matrix(matrix, name: str):
    matrix = sp.csr_matrix(matrix, dtype=np.float32) if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float32)
    values = matrix.data if sp.issparse(matrix) else matrix
    if not np.all(np.isfinite(values)):
        raise ScdefrError(f"{name} has NaN or infinite values")
    return matrix


def _min_value(matrix) -> float:
    values = matrix.data if sp.issparse(matrix) else matrix
    return float(values.min()) if values.size else 0.0


def _dense_rows(matrix, cells: np.ndarray | None) -> np.ndarray:
    rows = matrix if cells is None else matrix[cells]
    return rows.toarray() if sp.issparse(rows) else np.ascontiguousarray(rows)


@dataclass
class Batch:
    """One step's tensors: dense inputs of the batch's cells and their (sub)graph."""

    x: torch.Tensor
    target: torch.Tensor
    size_factors: torch.Tensor
    adjacency: torch.Tensor  # normalised, sparse COO
    propagation: torch.Tensor  # what the graph encoder propagates over: the adjacency itself unless directed
    cell_index: torch.Tensor
    edge_rows: torch.Tensor
    edge_cols: torch.Tensor
    edge_weights: torch.Tensor

    @property
    def n_cells(self) -> int:
        return self.x.shape[0]


def make_batch(graph: CellGraph, cells: np.ndarray | None, device: torch.device, counts: bool = True) -> Batch:
    """Tensors for ``cells`` (all cells when ``None``); ``counts=False`` leaves out the dense count
    targets (cells x genes), which inference does not need.

    A subset propagates over its induced subgraph, re-normalised from the kept edges' pattern; the
    reconstruction targets stay the full graph's values of those edges.
    """
    if cells is None:
        adjacency, targets, cell_index = graph.adjacency, graph.adjacency.tocoo(), np.arange(graph.n_cells)
    else:
        adjacency, cell_index = subgraph_adjacency(graph.adjacency, cells), cells
        targets = graph.adjacency[cells][:, cells].tocoo()
    propagated = propagation(adjacency, graph.normalization)
    sparse_adjacency = _sparse_tensor(adjacency, device)
    sparse_propagation = sparse_adjacency if propagated is adjacency else _sparse_tensor(propagated, device)

    def tensor(array, dtype=torch.float32):
        return torch.as_tensor(array, dtype=dtype).to(device)

    return Batch(
        x=tensor(graph.encoder_input(cells)),
        target=tensor(_dense_rows(graph.target, cells)) if counts else torch.empty(0, device=device),
        size_factors=tensor(graph.size_factors if cells is None else graph.size_factors[cells]),
        adjacency=sparse_adjacency,
        propagation=sparse_propagation,
        cell_index=tensor(cell_index, torch.long),
        edge_rows=tensor(targets.row, torch.long),
        edge_cols=tensor(targets.col, torch.long),
        edge_weights=tensor(targets.data),
    )


def _sparse_tensor(matrix: sp.spmatrix, device: torch.device) -> torch.Tensor:
    """A square scipy matrix as a coalesced torch sparse COO tensor on ``device``."""
    coo = matrix.tocoo()
    n = coo.shape[0]
    tensor = torch.sparse_coo_tensor(
        np.vstack([coo.row, coo.col]).astype(np.int64),
        coo.data.astype(np.float32),
        (n, n),
        check_invariants=False,  # built from a valid scipy matrix
    ).coalesce()
    return tensor.to(device)


def partition_cells(
    graph: CellGraph, batch_size: int, seed: int, flat_max_parts: float = FLAT_PARTITION_MAX_PARTS
) -> list[np.ndarray]:
    """Cluster-GCN parts: KMeans on PCA coordinates (computed here when the input has none).

    A flat KMeans into P parts costs cells x P per iteration, and P grows with the cells. Above
    ``flat_max_parts`` parts it runs in two levels instead: about sqrt(P) groups, then each group
    into parts in proportion to its size. Up to that size the parts are the flat ones.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD

    n_parts = max(1, math.ceil(graph.n_cells / batch_size) * PARTS_PER_BATCH)
    features = graph.pca
    if features is None:
        n_components = max(1, min(50, graph.n_genes - 1, graph.n_cells - 1))
        features = TruncatedSVD(n_components=n_components, random_state=seed).fit_transform(graph.x)
    groups = np.zeros(graph.n_cells, dtype=np.int64)
    if n_parts > flat_max_parts:
        n_groups = math.ceil(math.sqrt(n_parts))
        groups = KMeans(n_clusters=n_groups, n_init=1, random_state=seed).fit_predict(features)
    parts = []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        k = min(len(members), max(1, round(n_parts * len(members) / graph.n_cells)))
        labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(features[members])
        parts += [members[labels == part] for part in range(k) if np.any(labels == part)]
    return parts


def batches(
    graph: CellGraph, parts: list[np.ndarray], device: torch.device, shuffle_seed: int | None
) -> Iterator[Batch]:
    """One epoch's Cluster-GCN batches: ``parts`` grouped PARTS_PER_BATCH at a time, shuffled with
    ``shuffle_seed`` (in their order without one)."""
    order = np.arange(len(parts))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(parts))
    for start in range(0, len(order), PARTS_PER_BATCH):
        cells = np.sort(np.concatenate([parts[p] for p in order[start : start + PARTS_PER_BATCH]]))
        yield make_batch(graph, cells, device)
