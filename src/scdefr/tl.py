"""Scanpy-style tools: ``tl.scdefr`` trains and clusters, ``tl.estimate_n_clusters`` picks K without labels,
``tl.smooth_assignments`` averages soft assignments over the cell graph."""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from .config import DEFAULT_LEIDEN_RESOLUTION, DEFAULT_N_CLUSTERS_METHOD, check_smoothing_steps
from .errors import ScdefrError

logger = logging.getLogger(__name__)

# K is estimated on at most this many cells, a seeded random sample above it. The exact kNN search
# is quadratic in the cells (13 s at 100,000 and 63 s at 200,000 on 2 cores; at 1M cells it held a
# GPU run for over 7 minutes), and a community of min_cluster_fraction of the cells keeps hundreds
# of cells in the sample.
ESTIMATE_MAX_CELLS = 100_000


def estimate_n_clusters(
    embedding: np.ndarray,
    method: str = DEFAULT_N_CLUSTERS_METHOD,
    resolution: float = DEFAULT_LEIDEN_RESOLUTION,
    max_clusters: int = 30,
    seed: int = 0,
    n_neighbors: int = 15,
    min_cluster_fraction: float = 0.005,
) -> tuple[int, dict]:
    """Number of clusters of an embedding, from the embedding alone.

    ``leiden`` (default): Leiden communities (scanpy, igraph flavour) of the symmetrised kNN graph
    of the embedding at ``resolution`` (default 0.1: the pre-trained embedding is finely
    structured, and resolution 1 split the benchmark datasets into 13-24 communities);
    communities smaller than ``min_cluster_fraction`` of the cells (at least 3 cells) are not
    counted. The result is clipped to ``[2, max_clusters]``.
    ``silhouette``: KMeans for every k in ``2..max_clusters``; the k with the highest silhouette
    score (on at most 5,000 sampled cells) wins. It favours the coarsest clear split; on the
    benchmark's pre-trained embeddings it often chose 2-3 clusters for 8-19 annotated types.

    Above :data:`ESTIMATE_MAX_CELLS` cells either method sees a random sample of that many
    (drawn with ``seed``); ``info['n_cells_used']`` says how many it saw.

    Returns ``(k, info)``; ``info`` records the method and what it saw (h5ad-writable).
    """
    n_cells = embedding.shape[0]
    upper = int(min(max_clusters, n_cells - 1))
    if upper < 2:
        raise ScdefrError(f"cannot estimate a number of clusters from {n_cells} cells")
    if n_cells > ESTIMATE_MAX_CELLS:
        logger.info("estimating the number of clusters on a random sample of %d of %d cells", ESTIMATE_MAX_CELLS, n_cells)
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
            adata, resolution=resolution, adjacency=knn.maximum(knn.T), flavor="igraph",
            n_iterations=-1, directed=False, random_state=seed,
        )
        sizes = adata.obs["leiden"].value_counts()
        min_size = max(3, math.ceil(min_cluster_fraction * n_cells))
        counted = int((sizes >= min_size).sum())
        k = int(np.clip(counted, 2, upper))
        info = {
            "method": "leiden",
            "resolution": float(resolution),
            "n_neighbors": int(n_neighbors),
            "leiden_communities": int(len(sizes)),
            "min_cluster_size": int(min_size),
            "communities_counted": counted,
        }
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


def smooth_assignments(soft: np.ndarray, adjacency, steps: int) -> np.ndarray:
    """Soft assignments averaged ``steps`` times over each cell's graph neighbourhood (itself included).

    Q comes from each cell's own distance to the centres, so cells at a cluster border flip on
    small moves of z; their neighbours in the kNN graph mostly belong to one type. Each step is a
    random-walk step on the graph: every row becomes the mean of the rows of the cells it is
    connected to in ``adjacency`` (its pattern; weights ignored), so rows keep summing to 1.
    ``steps`` 0 returns ``soft`` unchanged.
    """
    import scipy.sparse as sp

    steps = check_smoothing_steps(steps)
    soft = np.asarray(soft, dtype=np.float32)
    if steps == 0:
        return soft
    # A + I (each cell counts itself, as the graph step's adjacency does), edge weights dropped
    pattern = (sp.csr_matrix(adjacency, dtype=np.float32) + sp.identity(soft.shape[0], format="csr")).tocsr()
    pattern.eliminate_zeros()
    pattern.data[:] = 1.0
    degree = np.asarray(pattern.sum(axis=1), dtype=np.float32).ravel()
    walk = (sp.diags(1.0 / degree) @ pattern).tocsr()
    for _ in range(steps):
        soft = walk @ soft
    return np.asarray(soft, dtype=np.float32)


def scdefr(
    adata,
    n_clusters: int | str = "auto",
    *,
    checkpoint_path: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    **options,
):
    """Train scDEFR on a graph AnnData and write its results into it; returns the fitted model.

    Writes ``obsm['X_scdefr']`` (fused embedding z), ``obsm['scdefr_soft']`` (the soft assignment Q
    averaged over ``smoothing_steps`` steps of the cell graph, :func:`smooth_assignments`),
    ``obs['scdefr_cluster']`` (its argmax as categories ``'0'..'K-1'``) and ``uns['scdefr']`` (parameters, K and
    how it was chosen, loss history, versions, device, seed). ``options`` are
    :class:`scdefr.model.SCDEFR`'s keywords (network, K estimation and training options).
    ``resume`` continues the run saved in that checkpoint (its options win over ``options``,
    except ``device``, ``amp``, ``log_every`` and ``checkpoint_every``). Labels are never read.
    """
    from .model import RUNTIME_OPTIONS, SCDEFR

    if resume:
        runtime = {k: v for k, v in options.items() if k in RUNTIME_OPTIONS}
        model = SCDEFR.load(resume, adata, **runtime)
    else:
        model = SCDEFR(adata, n_clusters, **options)
    model.fit(checkpoint_path)
    embedding, soft, clusters = model.predict()
    adata.obsm["X_scdefr"] = embedding
    adata.obsm["scdefr_soft"] = soft
    adata.obs["scdefr_cluster"] = clusters
    adata.uns["scdefr"] = model.summary()
    return model
