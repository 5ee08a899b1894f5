"""Preprocessing, scanpy-style: QC and normalisation (:func:`qc`), then the cell graph (:func:`build_graph`)."""

from ._graph import (
    EXACT_KNN_MAX_CELLS,
    KNN_TRANSFORMERS,
    SCANPY_PCA_MAX_CELLS,
    auto_knn_method,
    build_graph,
    covariance_pca,
    knn_binary,
)
from ._hvg import seurat_dispersions
from ._qc import mito_genes, qc, qc_metrics

__all__ = [
    "EXACT_KNN_MAX_CELLS",
    "KNN_TRANSFORMERS",
    "SCANPY_PCA_MAX_CELLS",
    "auto_knn_method",
    "build_graph",
    "covariance_pca",
    "knn_binary",
    "mito_genes",
    "qc",
    "qc_metrics",
    "seurat_dispersions",
]
