"""Clusters from an embedding without labels: the number of clusters, the centres and the read-out.

Below the user-facing model (:mod:`scdefr.model`) and beside :mod:`scdefr.tl`, which re-exports them.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from . import adjacency as graph_ops
from .errors import ScdefrError
from .options import ClusterOptions

__all__ = [
    "ESTIMATE_MAX_CELLS",
    "estimate_n_clusters",
    "graph_modularity",
    "hard_clusters",
    "kmeans_centres",
    "merge_clusters",
    "most_modular_split_and_merge",
    "smooth_assignments",
    "split_and_merge",
]

logger = logging.getLogger(__name__)

# K is estimated on at most this many cells, a seeded random sample above it. The exact kNN search
# is quadratic in the cells (13 s at 100,000 and 63 s at 200,000 on 2 cores; at 1M cells it held a
# GPU run for over 7 minutes), and a community of min_cluster_fraction of the cells keeps hundreds
# of cells in the sample.
ESTIMATE_MAX_CELLS = 100_000


def estimate_n_clusters(
    embedding: np.ndarray,
    method: str = ClusterOptions.n_clusters_method,
    resolution: float = ClusterOptions.leiden_resolution,
    max_clusters: int = ClusterOptions.max_clusters,
    seed: int = 0,
    n_neighbors: int = 15,
    min_cluster_fraction: float = 0.005,
) -> tuple[int, dict]:
    """Estimate the number of clusters of an embedding from the embedding alone.

    Above :data:`ESTIMATE_MAX_CELLS` cells either method sees a random sample of that many (drawn
    with ``seed``); ``info['n_cells_used']`` says how many it saw.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    method
        ``'leiden'``: Leiden communities (scanpy, igraph flavour) of the symmetrised kNN graph of the
        embedding at ``resolution``; communities smaller than ``min_cluster_fraction`` of the cells (at
        least 3 cells) are not counted, and the count is clipped to ``[2, max_clusters]``.
        ``'silhouette'``: KMeans for every k in ``2..max_clusters``; the k with the highest silhouette
        score (on at most 5,000 sampled cells) wins. It favours the coarsest clear split: on the
        benchmark datasets it often chose 2-3 clusters for 8-19 annotated types.
    resolution
        Leiden resolution. The default was chosen by leaving one dataset out
        (``benchmarks/protocol.py resolutions``): 0.1 merged small types (2 clusters for 12 types).
    max_clusters
        Largest number of clusters returned.
    seed
        Seeds the sample, Leiden and KMeans.
    n_neighbors
        Neighbours per cell in the kNN graph of ``method='leiden'``.
    min_cluster_fraction
        Smallest community counted by ``method='leiden'``, as a fraction of the cells.

    Returns
    -------
    k : int
        The number of clusters.
    info : dict
        The method and what it saw (h5ad-writable), with a ``note`` when K was raised or clipped.

    Raises
    ------
    ScdefrError
        Fewer than 3 cells, ``max_clusters`` below 2, or an unknown ``method``.
    """
    n_cells = embedding.shape[0]
    upper = int(min(max_clusters, n_cells - 1))
    if upper < 2:
        raise ScdefrError(f"cannot estimate a number of clusters from {n_cells} cells")
    if n_cells > ESTIMATE_MAX_CELLS:
        logger.info(
            "estimating the number of clusters on a random sample of %d of %d cells", ESTIMATE_MAX_CELLS, n_cells
        )
        sample = np.sort(np.random.default_rng(seed).choice(n_cells, ESTIMATE_MAX_CELLS, replace=False))
        embedding, n_cells = embedding[sample], ESTIMATE_MAX_CELLS
    if method == "leiden":
        import anndata
        import scanpy as sc
        from sklearn.neighbors import kneighbors_graph

        # sklearn's exact kNN on the small embedding: no numba compilation as in sc.pp.neighbors
        knn = kneighbors_graph(embedding, n_neighbors=min(n_neighbors, n_cells - 1), include_self=False)
        adata = anndata.AnnData(np.asarray(embedding, dtype=np.float32))
        sc.tl.leiden(
            adata,
            resolution=resolution,
            adjacency=knn.maximum(knn.T),
            flavor="igraph",
            n_iterations=-1,
            directed=False,
            random_state=seed,
        )
        sizes = adata.obs["leiden"].value_counts()
        min_size = max(3, math.ceil(min_cluster_fraction * n_cells))
        counted = int((sizes >= min_size).sum())
        k = int(np.clip(counted, 2, upper))
        note = None
        if k != counted:
            how = "raised" if k > counted else "clipped"
            note = (
                f"Leiden found {counted} communities of at least {min_size} cells; K {how} to {k}, "
                f"the nearest K in 2..{upper}" + (" (--max-clusters)" if k == max_clusters else "")
            )
            logger.warning("%s", note)
        info = {
            "method": "leiden",
            "resolution": float(resolution),
            "n_neighbors": int(n_neighbors),
            "leiden_communities": int(len(sizes)),
            "min_cluster_size": int(min_size),
            "communities_counted": counted,
        }
        if note:
            info["note"] = note
    elif method == "silhouette":
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        candidates = list(range(2, upper + 1))
        scores = []
        for k in candidates:
            labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(embedding)
            scores.append(float(silhouette_score(embedding, labels, sample_size=min(n_cells, 5000), random_state=seed)))
        k = candidates[int(np.argmax(scores))]
        info = {"method": "silhouette", "candidates": np.asarray(candidates), "silhouette_scores": np.asarray(scores)}
    else:
        raise ScdefrError(f"unknown method {method!r} for estimating the number of clusters (leiden or silhouette)")
    info["max_clusters"] = int(max_clusters)
    info["n_cells_used"] = int(n_cells)
    logger.info("estimated number of clusters: %d (%s)", k, method)
    return k, info


def kmeans_centres(embedding: np.ndarray, n_clusters: int, *, n_init: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run KMeans on the embedding, seeded, for the initial cluster centres.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    n_clusters
        Number of centres, 1 to the number of cells.
    n_init
        KMeans restarts; the best is kept.
    seed
        Seeds KMeans.

    Returns
    -------
    centres : numpy.ndarray
        ``n_clusters`` x dimensions, float32.
    labels : numpy.ndarray
        Each cell's cluster.
    """
    from sklearn.cluster import KMeans

    if not 1 <= n_clusters <= embedding.shape[0]:
        raise ScdefrError(f"number of clusters {n_clusters} is impossible for {embedding.shape[0]} cells")
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(embedding)
    return kmeans.cluster_centers_.astype(np.float32), kmeans.labels_


def merge_clusters(fine: np.ndarray, adjacency, n_clusters: int) -> np.ndarray:
    """Merge the clusters of a fine partition two at a time until ``n_clusters`` remain.

    Each time the pair with the most edges between them relative to the geometric mean of their
    degrees, ``e_ab / sqrt(d_a d_b)``, merges. Pieces of one large type share a long border, so many
    edges; two distinct types share few, however small they are: unlike KMeans and modularity, whose
    costs grow with a cluster's size, this neither splits large types nor absorbs small ones. It works
    on the table of edges between clusters, so it is linear in the cells and edges.

    Parameters
    ----------
    fine
        Each cell's cluster in the fine partition (any integer labels).
    adjacency
        The cell graph, cells x cells (its weights count as edges).
    n_clusters
        How many clusters to merge down to.

    Returns
    -------
    numpy.ndarray
        Each cell's merged cluster, ``0..n_clusters-1``.
    """
    fine = np.unique(fine, return_inverse=True)[1]
    n_fine = int(fine.max()) + 1
    edges = _edges_between_clusters(fine, adjacency)
    group = np.arange(n_fine)
    alive = list(range(n_fine))
    while len(alive) > n_clusters:
        degree = edges[alive].sum(axis=1)
        between = edges[np.ix_(alive, alive)].copy()
        np.fill_diagonal(between, -np.inf)
        cosine = between / np.maximum(np.sqrt(np.outer(degree, degree)), 1e-12)
        i, j = np.unravel_index(np.argmax(cosine), cosine.shape)
        kept, merged = alive[i], alive[j]
        edges[kept] += edges[merged]
        edges[:, kept] += edges[:, merged]
        group[group == merged] = kept
        alive.remove(merged)
    return np.unique(group[fine], return_inverse=True)[1]


def _edges_between_clusters(labels: np.ndarray, adjacency) -> np.ndarray:
    """The K x K table of the graph's edge weight between (and, on its diagonal, within) clusters ``0..K-1``."""
    import scipy.sparse as sp

    members = sp.csr_matrix((np.ones(labels.size), (np.arange(labels.size), labels)))
    return np.asarray((members.T @ sp.csr_matrix(adjacency, dtype=np.float64) @ members).todense())


def graph_modularity(labels: np.ndarray, adjacency) -> float:
    """Newman's modularity of a partition of the cell graph: the share of edge weight inside clusters
    minus its expectation for the same degrees (igraph's, without building an igraph graph).

    Parameters
    ----------
    labels
        Each cell's cluster, ``0..K-1``.
    adjacency
        The cell graph, cells x cells.

    Returns
    -------
    float
        The modularity, at most 1.
    """
    edges = _edges_between_clusters(labels, adjacency)
    total, degree = edges.sum(), edges.sum(axis=1)
    return float(np.trace(edges) / total - np.sum((degree / total) ** 2))


def split_and_merge(
    embedding: np.ndarray, adjacency, n_clusters: int, *, factor: int, seed: int, n_init: int = 5, restarts: int = 1
) -> np.ndarray:
    """KMeans of the embedding into ``factor * n_clusters`` clusters, merged over the cell graph to
    ``n_clusters`` (:func:`merge_clusters`); of ``restarts`` such runs, the one of highest
    :func:`graph_modularity`.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    adjacency
        The cell graph the pieces are merged over.
    n_clusters
        Number of clusters wanted.
    factor
        How many pieces per wanted cluster the embedding is first cut into.
    seed
        Seeds the KMeans of the first run, and the seeds of the others.
    n_init
        KMeans restarts within a run.
    restarts
        Runs from different KMeans seeds. The pieces, and so the greedy merges, change with the seed;
        the run whose clusters keep the most edge weight inside them is kept.

    Returns
    -------
    numpy.ndarray
        Each cell's cluster, ``0..n_clusters-1``.
    """
    import scipy.sparse as sp
    from sklearn.cluster import KMeans

    if restarts < 1:
        raise ScdefrError(f"restarts must be at least 1, not {restarts}")
    adjacency = sp.csr_matrix(adjacency, dtype=np.float64)  # once, not once per run
    n_pieces = min(factor * n_clusters, embedding.shape[0])
    seeds = [seed, *np.random.default_rng(seed).integers(0, 2**31 - 1, restarts - 1).tolist()]
    runs = [
        merge_clusters(
            KMeans(n_clusters=n_pieces, n_init=n_init, random_state=s).fit_predict(embedding), adjacency, n_clusters
        )
        for s in seeds
    ]
    return max(runs, key=lambda labels: graph_modularity(labels, adjacency))


def most_modular_split_and_merge(
    embeddings: dict[str, np.ndarray], adjacency, n_clusters: int, *, factor: int, seed: int, restarts: int = 1
) -> tuple[np.ndarray, dict]:
    """:func:`split_and_merge` of each embedding of the same cells; the partition of highest
    :func:`graph_modularity` on the cell graph (the first embedding's on a tie).

    With the final and the pre-trained embedding of a model, it asks without labels whether the
    joint phase left clusters the graph supports better.

    Parameters
    ----------
    embeddings
        Name -> cells x dimensions; the name of the one kept is logged.
    adjacency
        The cell graph the pieces are merged over and the partitions are scored on.
    n_clusters, factor, seed, restarts
        As :func:`split_and_merge`, for each embedding.

    Returns
    -------
    labels : numpy.ndarray
        Each cell's cluster, ``0..n_clusters-1``.
    choice : dict
        ``embedding``: the name of the one kept; ``modularity``: each one's partition's.
    """
    partitions = {
        name: split_and_merge(embedding, adjacency, n_clusters, factor=factor, seed=seed, restarts=restarts)
        for name, embedding in embeddings.items()
    }
    modularity = {name: graph_modularity(labels, adjacency) for name, labels in partitions.items()}
    kept = max(modularity, key=modularity.get)
    if len(partitions) > 1:
        scores = ", ".join(f"{name} {value:.4f}" for name, value in modularity.items())
        logger.info("merge read-out: the %s embedding's clusters kept (modularity %s)", kept, scores)
    return partitions[kept], {"embedding": kept, "modularity": modularity}


def smooth_assignments(soft: np.ndarray, adjacency, steps: int) -> np.ndarray:
    """Average soft assignments ``steps`` times over each cell's graph neighbourhood (itself included).

    Q comes from each cell's own distance to the centres, so cells at a cluster border flip on small
    moves of z; their neighbours in the kNN graph mostly belong to one type. Each step is a
    random-walk step on the graph's pattern (weights ignored), so rows keep summing to 1.

    Parameters
    ----------
    soft
        Cells x clusters, rows summing to 1.
    adjacency
        Cells x cells sparse graph (``obsp['scdefr_adjacency']``); only its pattern is used.
    steps
        Random-walk steps (0: ``soft`` unchanged).

    Returns
    -------
    numpy.ndarray
        The averaged assignments, the shape of ``soft``.
    """
    return graph_ops.smooth(soft, adjacency, steps)


def hard_clusters(soft: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, pd.Categorical]:
    """Assign each cell to the argmax of its row (or to ``labels``), clusters numbered ``'0'..'K-1'`` by size.

    Clusters are numbered largest first, as scanpy numbers Leiden communities. A cluster that holds
    no cell keeps its column (last) but is no category, with a warning.

    Parameters
    ----------
    soft
        Cells x clusters soft assignments.
    labels
        Each cell's cluster (a column of ``soft``) where it is not the argmax of its row.

    Returns
    -------
    soft : numpy.ndarray
        ``soft`` with its columns in cluster order.
    clusters : pandas.Categorical
        Each cell's cluster.
    """
    labels = soft.argmax(axis=1) if labels is None else labels
    sizes = np.bincount(labels, minlength=soft.shape[1])
    order = np.argsort(-sizes, kind="stable")
    n_filled = int((sizes > 0).sum())
    if n_filled < soft.shape[1]:
        logger.warning("%d of the %d clusters hold no cell after the read-out", soft.shape[1] - n_filled, soft.shape[1])
    rank = np.empty(soft.shape[1], dtype=np.int64)
    rank[order] = np.arange(soft.shape[1])
    clusters = pd.Categorical(rank[labels].astype(str), categories=[str(k) for k in range(n_filled)])
    return np.ascontiguousarray(soft[:, order]), clusters
