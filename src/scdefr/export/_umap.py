"""The export's UMAP of the scDEFR embedding: fitted on every cell, or on a subsample with the rest placed."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import ScdefrError
from ..options import ExportOptions

# Logged as the export step, whichever of its modules logs.
logger = logging.getLogger(__package__)

UMAP_NEIGHBORS_KEY = "scdefr_umap_neighbors"


def add_umap(adata, *, seed: int = 0, n_neighbors: int = 15, max_cells: int = ExportOptions.umap_max_cells) -> None:
    """Compute a UMAP of the scDEFR embedding (``obsm['X_scdefr']``) into ``obsm['X_umap']``.

    Its kNN graph is kept under its own key (:data:`UMAP_NEIGHBORS_KEY`) so the graph step's PCA
    neighbours stay untouched. It is searched exactly up to the graph step's limit (scanpy would
    switch to pynndescent from 8,192 cells, and pay its numba compilation again).
    ``uns['scdefr_umap']`` says how many cells were fitted and how many placed.

    Parameters
    ----------
    adata
        Trained AnnData (``obsm['X_scdefr']``); changed in place.
    seed
        Seeds the subsample, the kNN search and the layout.
    n_neighbors
        Neighbours per cell of the UMAP's kNN graph.
    max_cells
        Above this many cells (0: no limit) the layout is fitted on a random subsample of
        ``max_cells`` cells and every other cell is placed among its nearest fitted cells
        (:func:`place_among_neighbours`): a seeded UMAP lays cells out on one thread, and its time
        grows faster than the cells (benchmarks/umap_cost.py).

    Raises
    ------
    ScdefrError
        ``max_cells`` is negative or 1.
    """
    n_cells = adata.n_obs
    if max_cells == 1 or max_cells < 0:
        raise ScdefrError(f"the UMAP needs at least 2 fitted cells, got a limit of {max_cells}")
    if not max_cells or n_cells <= max_cells:
        _fit_umap(adata, seed=seed, n_neighbors=n_neighbors)
        adata.uns["scdefr_umap"] = {"n_fitted": n_cells, "n_placed": 0}
        return

    import anndata

    embedding = np.asarray(adata.obsm["X_scdefr"], dtype=np.float32)

    logger.info(
        "UMAP fitted on %d random cells of %d; the others are placed among their nearest fitted cells",
        max_cells,
        n_cells,
    )
    fitted = np.sort(np.random.default_rng(seed).choice(n_cells, size=max_cells, replace=False))
    placed = np.setdiff1d(np.arange(n_cells), fitted)
    subsample = anndata.AnnData(obs=pd.DataFrame(index=adata.obs_names[fitted]), obsm={"X_scdefr": embedding[fitted]})
    _fit_umap(subsample, seed=seed, n_neighbors=n_neighbors)
    coordinates = np.empty((n_cells, 2), dtype=np.float32)
    coordinates[fitted] = subsample.obsm["X_umap"]
    coordinates[placed] = place_among_neighbours(
        embedding[fitted], subsample.obsm["X_umap"], embedding[placed], n_neighbors=min(n_neighbors, max_cells)
    )
    adata.obsm["X_umap"] = coordinates
    adata.uns["umap"] = subsample.uns["umap"]
    adata.uns["scdefr_umap"] = {"n_fitted": int(max_cells), "n_placed": int(len(placed))}


def _fit_umap(adata, *, seed: int, n_neighbors: int) -> None:
    import scanpy as sc

    from ..pp import KNN_TRANSFORMERS, auto_knn_method

    n_neighbors = int(min(n_neighbors, max(2, adata.n_obs - 1)))
    sc.pp.neighbors(
        adata,
        n_neighbors=n_neighbors,
        use_rep="X_scdefr",
        key_added=UMAP_NEIGHBORS_KEY,
        transformer=KNN_TRANSFORMERS[auto_knn_method(adata.n_obs)],
        random_state=seed,
    )
    sc.tl.umap(adata, neighbors_key=UMAP_NEIGHBORS_KEY, random_state=seed)


def place_among_neighbours(reference, reference_layout, query, *, n_neighbors: int = 15) -> np.ndarray:
    """Lay each query cell at the inverse-distance-weighted mean layout of its nearest reference cells.

    umap-learn's ``transform`` also starts new points at a weighted mean of their nearest fitted
    points' positions, then refines them; the refinement is left out because it costs about as much
    per cell as the layout it would save.

    Parameters
    ----------
    reference
        Embedding of the fitted cells (cells x dimensions).
    reference_layout
        Their UMAP coordinates (cells x 2), in the same order.
    query
        Embedding of the cells to place (cells x dimensions).
    n_neighbors
        Nearest reference cells each query cell is placed among.

    Returns
    -------
    numpy.ndarray
        The query cells' coordinates (cells x 2, float32).
    """
    import numba
    from sklearn.neighbors import NearestNeighbors

    # The query cells are searched in parallel, on as many threads as scanpy's kNN and UMAP may use.
    search = NearestNeighbors(n_neighbors=n_neighbors, n_jobs=numba.get_num_threads()).fit(reference)
    distances, nearest = search.kneighbors(query)
    weights = 1.0 / np.maximum(distances, 1e-12)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("qk,qkd->qd", weights, np.asarray(reference_layout)[nearest]).astype(np.float32)
