"""The scDEFR network: layers (TAGConv, encoder blocks, global self-correlation), losses, and the module.

Kept apart from the training plan (``scdefr.training``) and the user-facing model (``scdefr.model``),
as scvi-tools separates module, training plan and model.
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
