"""Plots people look at: QC, UMAP, loss curves, cluster sizes."""

from .qc import qc_plot
from .results import cluster_sizes, embedding, loss_curves

__all__ = ["cluster_sizes", "embedding", "loss_curves", "qc_plot"]
