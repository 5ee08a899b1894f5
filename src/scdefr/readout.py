"""The clusters of a finished model, without labels: its embedding cut into KMeans pieces merged over
the cell graph, soft assignments averaged over the graph, and hard clusters numbered by size.

Below the user-facing model (:mod:`scdefr.model`, whose ``predict`` reads them out) and beside
:mod:`scdefr.tl`, which re-exports :func:`smooth_assignments`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from . import adjacency as graph_ops
from .errors import ScdefrError

__all__ = [
    "SMALL_CLUSTER_CELLS",
    "graph_modularity",
    "hard_clusters",
    "merge_clusters",
    "most_modular_split_and_merge",
    "small_clusters_note",
    "smooth_assignments",
    "split_and_merge",
]

logger = logging.getLogger(__name__)

# A cluster under this many cells is a handful of outlying cells rather than a type: predict() says so.
SMALL_CLUSTER_CELLS = 10


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
    return _scored_split_and_merge(
        embedding, adjacency, n_clusters, factor=factor, seed=seed, n_init=n_init, restarts=restarts
    )[0]


def _scored_split_and_merge(
    embedding: np.ndarray, adjacency, n_clusters: int, *, factor: int, seed: int, n_init: int = 5, restarts: int = 1
) -> tuple[np.ndarray, float]:
    """:func:`split_and_merge`'s partition and its modularity, so that a caller comparing partitions
    does not compute it again."""
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
    modularity = [graph_modularity(labels, adjacency) for labels in runs]
    best = int(np.argmax(modularity))  # the first run on a tie
    return runs[best], modularity[best]


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
    scored = {
        name: _scored_split_and_merge(embedding, adjacency, n_clusters, factor=factor, seed=seed, restarts=restarts)
        for name, embedding in embeddings.items()
    }
    partitions = {name: labels for name, (labels, _) in scored.items()}
    modularity = {name: value for name, (_, value) in scored.items()}
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


def small_clusters_note(clusters: pd.Categorical) -> str | None:
    """A line naming the clusters of fewer than :data:`SMALL_CLUSTER_CELLS` cells, or ``None`` if there are none.

    Parameters
    ----------
    clusters
        Each cell's cluster.

    Returns
    -------
    str or None
        The clusters, their sizes and what to try, for the log and ``uns['scdefr']['notes']``.
    """
    sizes = pd.Series(clusters).value_counts(sort=False).reindex(clusters.categories, fill_value=0)
    small = sizes[sizes < SMALL_CLUSTER_CELLS]
    if small.empty:
        return None
    listed = ", ".join(f"{name} ({count})" for name, count in small.items())
    return (
        f"{len(small)} of {len(sizes)} clusters hold fewer than {SMALL_CLUSTER_CELLS} cells: {listed}; such a "
        "cluster is a few cells the cell graph barely links to the others, and fewer clusters (or "
        "--n-clusters auto) may describe these cells better"
    )
