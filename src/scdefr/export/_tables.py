"""The export's per-cell tables and the metrics of the clustering."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import metrics
from ..errors import ScdefrError


def clusters_table(adata) -> pd.DataFrame:
    """Tabulate each cell's cluster and its soft assignment to that cluster (``probability``).

    Parameters
    ----------
    adata
        Trained AnnData (``obs['scdefr_cluster']``, ``obsm['scdefr_soft']``).

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``cell_id``, ``cluster`` and ``probability``.
    """
    return pd.DataFrame(
        {
            "cell_id": adata.obs_names.to_numpy(),
            "cluster": adata.obs["scdefr_cluster"].astype(str).to_numpy(),
            "probability": own_cluster_share(adata),
        }
    )


def own_cluster_share(adata) -> np.ndarray:
    """Each cell's entry of ``obsm['scdefr_soft']`` in the column of its own cluster (the columns are in
    the clusters' order)."""
    soft = np.asarray(adata.obsm["scdefr_soft"])
    return soft[np.arange(adata.n_obs), adata.obs["scdefr_cluster"].cat.codes.to_numpy()]


def embedding_table(adata) -> pd.DataFrame:
    """Tabulate the scDEFR embedding of each cell.

    Parameters
    ----------
    adata
        Trained AnnData (``obsm['X_scdefr']``).

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``cell_id`` and the embedding dimensions ``scdefr_1..d``.
    """
    z = np.asarray(adata.obsm["X_scdefr"])
    table = pd.DataFrame(z, columns=[f"scdefr_{i + 1}" for i in range(z.shape[1])])
    table.insert(0, "cell_id", adata.obs_names.to_numpy())
    return table


def compute_metrics(adata, label_key: str | None = None, *, seed: int = 0) -> dict:
    """Score the clustering: sizes, silhouette in the embedding and, for evaluation only, agreement with labels.

    Parameters
    ----------
    adata
        Trained AnnData (``obsm['X_scdefr']``, ``obs['scdefr_cluster']``, ``obsm['scdefr_soft']``,
        ``uns['scdefr']``).
    label_key
        ``obs`` column of known labels; cells without a label are left out of the agreement scores.
    seed
        Seeds the silhouette's sample of cells (:func:`scdefr.metrics.silhouette`).

    Returns
    -------
    dict
        JSON-ready: ``n_cells``, ``n_clusters`` (non-empty), ``n_clusters_requested``,
        ``cluster_sizes``, ``silhouette``, ``silhouette_cells``, ``mean_probability``,
        ``n_clusters_choice`` and, with ``label_key``, ``label_key``, ``n_labelled_cells``,
        ``n_labels``, ``ari``, ``nmi`` and ``accuracy`` (:func:`scdefr.metrics.agreement`).

    Raises
    ------
    ScdefrError
        The ``label_key`` column holds no value.
    """
    clusters = adata.obs["scdefr_cluster"].astype(str).to_numpy()
    categories = [str(c) for c in adata.obs["scdefr_cluster"].astype("category").cat.categories]
    sizes = pd.Series(clusters).value_counts().reindex(categories, fill_value=0)
    trained = adata.uns["scdefr"]
    result = {
        "n_cells": int(adata.n_obs),
        "n_clusters": int(sizes.gt(0).sum()),
        "n_clusters_requested": _plain(trained.get("n_clusters", len(categories))),
        "cluster_sizes": {name: int(size) for name, size in sizes.items()},
        "silhouette": metrics.silhouette(adata.obsm["X_scdefr"], clusters, seed=seed),
        "silhouette_cells": int(min(adata.n_obs, metrics.SILHOUETTE_MAX_CELLS)),
        "mean_probability": float(own_cluster_share(adata).mean()),
        "n_clusters_choice": _plain(trained.get("n_clusters_choice", {})),
    }
    if label_key is not None:
        labels = adata.obs[label_key]
        known = labels.notna().to_numpy()
        if not known.any():
            raise ScdefrError(f"label column {label_key!r} has no values")
        result["label_key"] = label_key
        result["n_labelled_cells"] = int(known.sum())
        result["n_labels"] = int(labels[known].astype(str).nunique())
        result.update(metrics.agreement(labels[known].astype(str).to_numpy(), clusters[known]))
    return result


def _plain(value):
    """numpy scalars/arrays and h5ad dicts as JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
