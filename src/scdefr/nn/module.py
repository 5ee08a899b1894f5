"""The fused scDEFR network: autoencoder + graph encoder, fusion, ZINB decoder, DEC assignments."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import DEFAULT_HIDDEN_DIMS, ZINB_FORMS
from .layers import DenseBlock, GraphBlock, global_self_correlation, soft_assignment

MEAN_RANGE = (1e-5, 1e6)
DISPERSION_RANGE = (1e-4, 1e4)


@dataclass
class ModuleOutput:
    """Everything one forward pass yields; the assignments are ``None`` before the centres exist."""

    z: torch.Tensor
    z_ae: torch.Tensor
    z_graph: torch.Tensor
    pi: torch.Tensor | None  # the ZINB parameters: None when the pass did not decode
    theta: torch.Tensor | None
    mu: torch.Tensor | None
    q: torch.Tensor | None = None
    q_ae: torch.Tensor | None = None
    q_graph: torch.Tensor | None = None


class ZINBDecoder(nn.Module):
    """Latent -> hidden layers (Linear, BN, ReLU, dropout) -> ZINB parameters (pi, theta, mu).

    ``form='counts'`` (default, the principled form): separate heads, ``mu`` is scaled by the
    cell's size factor and the loss targets the raw counts. ``form='paper'`` reproduces the paper's
    code: one bias-free weight matrix shared by the three heads, no size factors, and the loss
    targets the log-normalised X.
    """

    def __init__(self, latent_dim: int, hidden_dims: list[int], n_genes: int, dropout: float, form: str):
        super().__init__()
        if form not in ZINB_FORMS:
            raise ValueError(f"zinb form must be one of {ZINB_FORMS}, got {form!r}")
        self.form = form
        widths = [latent_dim, *hidden_dims]
        self.body = nn.Sequential(*(DenseBlock(i, o, dropout) for i, o in zip(widths[:-1], widths[1:])))
        if form == "counts":
            self.pi_head = nn.Linear(widths[-1], n_genes)
            self.theta_head = nn.Linear(widths[-1], n_genes)
            self.mu_head = nn.Linear(widths[-1], n_genes)
        else:
            self.shared_head = nn.Linear(widths[-1], n_genes, bias=False)
            nn.init.xavier_uniform_(self.shared_head.weight)

    def forward(self, z: torch.Tensor, size_factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.body(z)
        if self.form == "counts":
            pi_logit, theta_raw, log_mu = self.pi_head(h), self.theta_head(h), self.mu_head(h)
        else:
            pi_logit = theta_raw = log_mu = self.shared_head(h)
        pi = torch.sigmoid(pi_logit)
        theta = F.softplus(theta_raw).clamp(*DISPERSION_RANGE)
        # clamp before exp: same values as exp-then-clamp without overflowing to inf in low precision
        mu = torch.exp(log_mu.clamp(math.log(MEAN_RANGE[0]), math.log(MEAN_RANGE[1])))
        if self.form == "counts":
            mu = mu * size_factors.unsqueeze(1)
        return pi, theta, mu


class SCDEFRModule(nn.Module):
    """scDEFR's network over one graph of ``n_cells`` cells.

    Two encoders of equal widths read the same input X: an autoencoder (``DenseBlock``) and a graph
    encoder (``GraphBlock``, TAGConv without activation). The input of layer l+1 of *both* is
    ``(1 - sigma) * h_graph_l + sigma * h_ae_l``. Their outputs are fused per cell,
    ``z_i = a * z_ae + b * z_graph`` (``a``, ``b`` learned, n_cells x d, initialised to 0.5),
    smoothed over the graph ``z_l = A z_i``, and refined by global self-correlation
    ``z = alpha * softmax(z_l k^T) k + z_l`` (``alpha`` learned, initialised to 0), whose keys ``k``
    are all cells, or an evenly spaced subset of ``ATTENTION_MAX_KEYS`` above that many. The ZINB
    decoder reconstructs expression from z; soft assignments of z, z_ae and z_graph to the cluster
    centres drive the joint phase.

    ``a`` and ``b`` are per cell, so the module is transductive: it embeds the cells it was built for.
    ``cell_index`` selects their rows when a mini-batch holds only some cells.
    """

    def __init__(
        self,
        n_genes: int,
        n_cells: int,
        hidden_dims: tuple[int, ...] | list[int] = DEFAULT_HIDDEN_DIMS,
        sigma: float = 0.1,
        dropout: float = 0.01,
        hops: int = 3,
        zinb_form: str = "counts",
        n_clusters: int = 0,
    ):
        super().__init__()
        hidden_dims = [int(d) for d in hidden_dims]
        self.config = {
            "n_genes": int(n_genes),
            "n_cells": int(n_cells),
            "hidden_dims": hidden_dims,
            "sigma": float(sigma),
            "dropout": float(dropout),
            "hops": int(hops),
            "zinb_form": str(zinb_form),
            "n_clusters": int(n_clusters),
        }
        self.sigma = float(sigma)
        widths = [int(n_genes), *hidden_dims]
        self.autoencoder = nn.ModuleList(DenseBlock(i, o, dropout) for i, o in zip(widths[:-1], widths[1:]))
        self.graph_encoder = nn.ModuleList(GraphBlock(i, o, hops, dropout) for i, o in zip(widths[:-1], widths[1:]))
        latent_dim = hidden_dims[-1]
        self.fusion_ae = nn.Parameter(torch.full((n_cells, latent_dim), 0.5))
        self.fusion_graph = nn.Parameter(torch.full((n_cells, latent_dim), 0.5))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.decoder = ZINBDecoder(latent_dim, hidden_dims[-2::-1], n_genes, dropout, zinb_form)
        self.cluster_centres = nn.Parameter(torch.zeros(n_clusters, latent_dim)) if n_clusters else None

    @property
    def latent_dim(self) -> int:
        return self.config["hidden_dims"][-1]

    def set_cluster_centres(self, centres: torch.Tensor) -> None:
        """Create (or replace) the learnable cluster centres, e.g. from KMeans on the embedding."""
        device = self.alpha.device
        self.cluster_centres = nn.Parameter(centres.detach().to(device=device, dtype=torch.float32).clone())
        self.config["n_clusters"] = int(centres.shape[0])

    def encode(self, x: torch.Tensor, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both encoders with layer-wise fusion; returns ``(z_ae, z_graph)``."""
        h_ae = h_graph = x
        last = len(self.autoencoder) - 1
        for depth, (ae_layer, graph_layer) in enumerate(zip(self.autoencoder, self.graph_encoder)):
            ae_in = h_ae if depth == 0 else fused
            graph_in = h_graph if depth == 0 else fused
            h_ae, h_graph = ae_layer(ae_in), graph_layer(graph_in, adjacency)
            if depth < last:
                fused = (1.0 - self.sigma) * h_graph + self.sigma * h_ae
        return h_ae, h_graph

    def forward(
        self,
        x: torch.Tensor,
        adjacency: torch.Tensor,
        cell_index: torch.Tensor,
        size_factors: torch.Tensor | None,
        decode: bool = True,
    ) -> ModuleOutput:
        """``decode=False`` skips the ZINB decoder (cells x genes outputs): embedding and assignments only."""
        z_ae, z_graph = self.encode(x, adjacency)
        z_cell = self.fusion_ae[cell_index] * z_ae + self.fusion_graph[cell_index] * z_graph
        with torch.autocast(device_type=x.device.type, enabled=False):
            z_local = torch.sparse.mm(adjacency, z_cell.float())
        z = self.alpha * global_self_correlation(z_local) + z_local
        pi, theta, mu = self.decoder(z, size_factors) if decode else (None, None, None)
        out = ModuleOutput(z=z, z_ae=z_ae, z_graph=z_graph, pi=pi, theta=theta, mu=mu)
        if self.cluster_centres is not None:
            out.q = soft_assignment(z, self.cluster_centres)
            out.q_ae = soft_assignment(z_ae, self.cluster_centres)
            out.q_graph = soft_assignment(z_graph, self.cluster_centres)
        return out
