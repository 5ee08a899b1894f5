"""Clusters from an embedding without labels: the number of clusters and the initial centres.

Below the user-facing model (:mod:`scdefr.model`) and beside :mod:`scdefr.tl`, which re-exports
:func:`estimate_n_clusters`; the clusters of a finished model are read out by :mod:`scdefr.readout`.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .errors import ScdefrError
from .options import ClusterOptions

__all__ = ["ESTIMATE_MAX_CELLS", "FAR_FROM_FORMED", "compare_given_k", "estimate_n_clusters", "kmeans_centres"]

logger = logging.getLogger(__name__)

# K is estimated on at most this many cells, a seeded random sample above it. The exact kNN search
# is quadratic in the cells (13 s at 100,000 and 63 s at 200,000 on 2 cores; at 1M cells it held a
# GPU run for over 7 minutes), and a community of min_cluster_fraction of the cells keeps hundreds
# of cells in the sample.
ESTIMATE_MAX_CELLS = 100_000

# A given K this many times above or below auto's count is said in a note: on the benchmark's sets that far
# apart, the given K and auto scored differently, either way (BENCHMARKS.md).
FAR_FROM_FORMED = 1.5

# Leiden's count of K: neighbours per cell, and the smallest community counted (a fraction of the cells).
LEIDEN_NEIGHBORS = 15
MIN_CLUSTER_FRACTION = 0.005


def estimate_n_clusters(
    embedding: np.ndarray,
    method: str = ClusterOptions.n_clusters_method,
    resolution: float = ClusterOptions.leiden_resolution,
    max_clusters: int = ClusterOptions.max_clusters,
    seed: int = 0,
    n_neighbors: int = LEIDEN_NEIGHBORS,
    min_cluster_fraction: float = MIN_CLUSTER_FRACTION,
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
    embedding = _sampled(embedding, seed)
    n_cells = embedding.shape[0]
    if method == "leiden":
        info = _leiden_communities(embedding, resolution, seed, n_neighbors, min_cluster_fraction)
        counted, min_size = info["communities_counted"], info["min_cluster_size"]
        k = int(np.clip(counted, 2, upper))
        if k != counted:
            how = "raised" if k > counted else "clipped"
            info["note"] = (
                f"Leiden found {counted} communities of at least {min_size} cells; K {how} to {k}, "
                f"the nearest K in 2..{upper}" + (" (--max-clusters)" if k == max_clusters else "")
            )
            logger.warning("%s", info["note"])
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


def _sampled(embedding: np.ndarray, seed: int) -> np.ndarray:
    """The embedding, or a seeded random sample of :data:`ESTIMATE_MAX_CELLS` of its cells above that."""
    n_cells = embedding.shape[0]
    if n_cells <= ESTIMATE_MAX_CELLS:
        return embedding
    logger.info("counting clusters on a random sample of %d of %d cells", ESTIMATE_MAX_CELLS, n_cells)
    return embedding[np.sort(np.random.default_rng(seed).choice(n_cells, ESTIMATE_MAX_CELLS, replace=False))]


def _leiden_communities(
    embedding: np.ndarray,
    resolution: float,
    seed: int,
    n_neighbors: int = LEIDEN_NEIGHBORS,
    min_cluster_fraction: float = MIN_CLUSTER_FRACTION,
) -> dict:
    """Leiden on the embedding's symmetrised kNN graph: the communities found, and those counted (at least
    ``min_cluster_fraction`` of the cells and 3 cells), as :func:`estimate_n_clusters` describes."""
    import anndata
    import scanpy as sc
    from sklearn.neighbors import kneighbors_graph

    n_cells = embedding.shape[0]
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
    return {
        "method": "leiden",
        "resolution": float(resolution),
        "n_neighbors": int(n_neighbors),
        "leiden_communities": int(len(sizes)),
        "min_cluster_size": int(min_size),
        "communities_counted": int((sizes >= min_size).sum()),
    }


def compare_given_k(embedding: np.ndarray, n_clusters: int, resolution: float, seed: int) -> dict:
    """How many groups the embedding forms by ``--n-clusters auto``'s count, beside a K the user gave.

    Parameters
    ----------
    embedding
        Cells x dimensions (the pre-trained embedding).
    n_clusters
        The K given.
    resolution
        The Leiden resolution ``auto`` counts at.
    seed
        Seeds the count as :func:`estimate_n_clusters`.

    Returns
    -------
    dict
        ``communities_counted`` and ``resolution`` (h5ad-writable), with a ``note`` when K is at least
        :data:`FAR_FROM_FORMED` times above or below the count.
    """
    formed = _leiden_communities(_sampled(embedding, seed), resolution, seed)["communities_counted"]
    comparison = {"communities_counted": formed, "resolution": float(resolution)}
    if not 1 / FAR_FROM_FORMED < formed / n_clusters < FAR_FROM_FORMED:
        effect = "merge groups the cells form apart" if formed > n_clusters else "split groups the cells form"
        comparison["note"] = (
            f"{n_clusters} clusters were asked for, but the pre-trained embedding forms about {formed} groups "
            f"(--n-clusters auto's count, Leiden at resolution {resolution:g}): the clusters will {effect}; "
            "compare with --n-clusters auto"
        )
        logger.warning("%s", comparison["note"])
    return comparison


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
