"""The scDEFR network and its losses: layers (TAGConv, encoder blocks, global self-correlation), losses,
and the module that joins them (``SCDEFRModule``: forward pass, loss terms, inference).

Kept apart from the data layer (:mod:`scdefr.data`), the training plan (:mod:`scdefr.plan`) and the
user-facing model (:mod:`scdefr.model`), as scvi-tools separates module, data, training plan and model.
"""

from .layers import TAGConv, global_self_correlation, soft_assignment
from .losses import (
    edge_reconstruction_loss,
    kl_clustering_loss,
    sampled_edge_loss,
    target_distribution,
    zinb_negative_log_likelihood,
)
from .module import ModuleOutput, SCDEFRModule

__all__ = [
    "ModuleOutput",
    "SCDEFRModule",
    "TAGConv",
    "edge_reconstruction_loss",
    "global_self_correlation",
    "kl_clustering_loss",
    "sampled_edge_loss",
    "soft_assignment",
    "target_distribution",
    "zinb_negative_log_likelihood",
]
