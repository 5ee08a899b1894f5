"""Clustering quality, for evaluation only: nothing here feeds back into training or the choice of K.

Agreement with known labels (ARI, NMI, Hungarian-matched accuracy) and the label-free silhouette of
the embedding. The library routines do the work; these wrappers only agree on inputs and sampling.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SILHOUETTE_MAX_CELLS",
    "adjusted_rand_index",
    "agreement",
    "hungarian_accuracy",
    "normalized_mutual_info",
    "silhouette",
]

# Silhouette is O(n^2): above this many cells it is computed on a seeded random sample.
SILHOUETTE_MAX_CELLS = 10_000


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Compute the adjusted Rand index of the clusters against the labels.

    The score is :func:`sklearn.metrics.adjusted_rand_score`.

    Parameters
    ----------
    labels_true
        Known label of each cell.
    labels_pred
        Cluster of each cell, in the same order.

    Returns
    -------
    float
        1 for identical partitions, about 0 for a random one.
    """
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(labels_true), np.asarray(labels_pred)))


def normalized_mutual_info(labels_true, labels_pred) -> float:
    """Compute the normalised mutual information of the clusters and the labels.

    The score is :func:`sklearn.metrics.normalized_mutual_info_score` (arithmetic-mean normalisation).

    Parameters
    ----------
    labels_true
        Known label of each cell.
    labels_pred
        Cluster of each cell, in the same order.

    Returns
    -------
    float
        Between 0 (independent) and 1 (identical partitions).
    """
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(np.asarray(labels_true), np.asarray(labels_pred)))


def hungarian_accuracy(labels_true, labels_pred) -> float:
    """Compute the fraction of cells whose cluster maps to their label under the best one-to-one matching.

    Clusters and labels are matched by :func:`scipy.optimize.linear_sum_assignment` on the contingency
    table; with more clusters than labels (or the reverse) the unmatched ones count as wrong.

    Parameters
    ----------
    labels_true
        Known label of each cell.
    labels_pred
        Cluster of each cell, in the same order.

    Returns
    -------
    float
        Between 0 and 1.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(np.asarray(labels_true), np.asarray(labels_pred))
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def silhouette(embedding: np.ndarray, labels, *, max_cells: int = SILHOUETTE_MAX_CELLS, seed: int = 0) -> float | None:
    """Compute the mean silhouette of ``labels`` in ``embedding`` (Euclidean).

    Parameters
    ----------
    embedding
        Cells x dimensions.
    labels
        Cluster of each cell.
    max_cells
        Above this many cells a seeded random sample of that size is scored (the score is O(n^2)).
    seed
        Seeds the sample.

    Returns
    -------
    float or None
        Between -1 and 1; ``None`` when undefined (one cluster, or one cell per cluster).
    """
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    n_labels = np.unique(labels).size
    if n_labels < 2 or n_labels >= labels.size:
        return None
    sample = max_cells if labels.size > max_cells else None
    return float(silhouette_score(np.asarray(embedding), labels, sample_size=sample, random_state=seed))


def agreement(labels_true, labels_pred) -> dict:
    """Score the clusters against known labels: ARI, NMI and Hungarian accuracy.

    Parameters
    ----------
    labels_true
        Known label of each cell.
    labels_pred
        Cluster of each cell, in the same order.

    Returns
    -------
    dict
        ``'ari'`` (:func:`adjusted_rand_index`), ``'nmi'`` (:func:`normalized_mutual_info`) and
        ``'accuracy'`` (:func:`hungarian_accuracy`).
    """
    return {
        "ari": adjusted_rand_index(labels_true, labels_pred),
        "nmi": normalized_mutual_info(labels_true, labels_pred),
        "accuracy": hungarian_accuracy(labels_true, labels_pred),
    }
