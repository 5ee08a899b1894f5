"""The fused scDEFR network: autoencoder + graph encoder, fusion, ZINB decoder, DEC assignments."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._device import autocast
from ..options import NetworkOptions
from .layers import DenseBlock, GraphBlock, global_self_correlation, soft_assignment
from .losses import (
    edge_reconstruction_loss,
    kl_clustering_loss,
    sampled_edge_loss,
    target_distribution,
    zinb_negative_log_likelihood,
)

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

    ``hidden_dims`` are the encoder widths reversed, then (``decoder_layers='gene_wide'``, the paper's)
    one more layer of ``n_genes`` units.

    ``form='counts'`` (default, the principled form): separate heads, ``mu`` is scaled by the
    cell's size factor and the loss targets the raw counts. ``form='paper'`` reproduces the paper's
    code: one bias-free weight matrix shared by the three heads, no size factors, and the loss
    targets the log-normalised X.
    """

    def __init__(self, latent_dim: int, hidden_dims: list[int], n_genes: int, dropout: float, form: str):
        super().__init__()
        self.form = form
        widths = [latent_dim, *hidden_dims]
        self.body = nn.Sequential(*(DenseBlock(i, o, dropout) for i, o in zip(widths[:-1], widths[1:], strict=False)))
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

    def __init__(self, n_genes: int, n_cells: int, network: NetworkOptions, n_clusters: int = 0):
        super().__init__()
        self.config = {
            "n_genes": int(n_genes),
            "n_cells": int(n_cells),
            "n_clusters": int(n_clusters),
            "network": network.to_dict(),
        }
        self.sigma = network.sigma
        hidden_dims, dropout = list(network.hidden_dims), network.dropout
        widths = [int(n_genes), *hidden_dims]
        self.autoencoder = nn.ModuleList(
            DenseBlock(i, o, dropout) for i, o in zip(widths[:-1], widths[1:], strict=False)
        )
        self.graph_encoder = nn.ModuleList(
            GraphBlock(i, o, network.tag_hops, dropout) for i, o in zip(widths[:-1], widths[1:], strict=False)
        )
        latent_dim = hidden_dims[-1]
        self.fusion_ae = nn.Parameter(torch.full((n_cells, latent_dim), 0.5))
        self.fusion_graph = nn.Parameter(torch.full((n_cells, latent_dim), 0.5))
        self.alpha = nn.Parameter(torch.zeros(1))
        decoder_dims = [*hidden_dims[-2::-1], *([int(n_genes)] if network.decoder_layers == "gene_wide" else [])]
        self.decoder = ZINBDecoder(latent_dim, decoder_dims, n_genes, dropout, network.zinb_form)
        self.cluster_centres = nn.Parameter(torch.zeros(n_clusters, latent_dim)) if n_clusters else None

    def set_cluster_centres(self, centres: torch.Tensor) -> None:
        """Create (or replace) the learnable cluster centres, e.g. from KMeans on the embedding."""
        device = self.alpha.device
        self.cluster_centres = nn.Parameter(centres.detach().to(device=device, dtype=torch.float32).clone())
        self.config["n_clusters"] = int(centres.shape[0])

    def encode(self, x: torch.Tensor, propagation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both encoders with layer-wise fusion, the graph encoder propagating over ``propagation``
        (a batch's ``propagation``); returns ``(z_ae, z_graph)``."""
        h_ae, h_graph = self.autoencoder[0](x), self.graph_encoder[0](x, propagation)
        for ae_layer, graph_layer in zip(self.autoencoder[1:], self.graph_encoder[1:], strict=True):
            fused = (1.0 - self.sigma) * h_graph + self.sigma * h_ae
            h_ae, h_graph = ae_layer(fused), graph_layer(fused, propagation)
        return h_ae, h_graph

    def forward(
        self,
        x: torch.Tensor,
        adjacency: torch.Tensor,
        cell_index: torch.Tensor,
        size_factors: torch.Tensor | None,
        decode: bool = True,
        propagation: torch.Tensor | None = None,
    ) -> ModuleOutput:
        """``decode=False`` skips the ZINB decoder (cells x genes outputs): embedding and assignments only.
        ``propagation``: the graph encoder's matrix when it is not ``adjacency`` (a directed graph)."""
        z_ae, z_graph = self.encode(x, adjacency if propagation is None else propagation)
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

    def loss(
        self,
        out: ModuleOutput,
        batch,
        phase: str,
        graph_loss: str,
        frequencies: dict | None,
        balance: float,
        target_gradient: str = "detached",
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of one forward pass over ``batch`` (a :class:`scdefr.data.Batch`), in
        float32 outside autocast.

        ``frequencies``: soft cluster sizes over all cells for ``q``, ``q_ae`` and ``q_graph`` (mini-batches;
        see :func:`~scdefr.nn.losses.target_distribution`); ``None``: each target uses the batch's own.
        ``balance``: the exponent on those sizes in every target. ``target_gradient``: ``'through'`` lets
        gradients flow through the targets as well (the paper's code).
        """
        if graph_loss == "sampled":
            reconstruction = sampled_edge_loss(out.z_graph, batch.edge_rows, batch.edge_cols, batch.n_cells)
        else:
            reconstruction = edge_reconstruction_loss(
                out.z_graph, batch.edge_rows, batch.edge_cols, batch.edge_weights, batch.n_cells
            )
        terms = {
            "reconstruction": reconstruction,
            "zinb": zinb_negative_log_likelihood(batch.target, out.mu, out.theta, out.pi),
        }
        if phase == "joint":
            sizes = frequencies or {}
            detach = target_gradient == "detached"

            def target(name: str, q: torch.Tensor) -> torch.Tensor:
                return target_distribution(q, sizes.get(name), balance, detach=detach)

            q, q_graph, q_ae = out.q.float(), out.q_graph.float(), out.q_ae.float()
            terms["kl"] = kl_clustering_loss(q, target("q", q))
            terms["bce_graph"] = F.binary_cross_entropy(q_graph, target("q_graph", q_graph))
            terms["bce_ae"] = F.binary_cross_entropy(q_ae, target("q_ae", q_ae))
        return terms

    def encoder_norms(self) -> list[nn.BatchNorm1d]:
        encoders = (self.autoencoder, self.graph_encoder)
        return [m for part in encoders for m in part.modules() if isinstance(m, nn.BatchNorm1d)]

    @torch.no_grad()
    def refresh_batchnorm(self, x: torch.Tensor, propagation: torch.Tensor, amp: bool = False) -> None:
        """Re-estimate the encoders' BatchNorm statistics on these cells (dropout off), then evaluation mode.

        With momentum 0.01 the running statistics lag far behind short runs, and evaluation-mode
        outputs would differ from what training saw. The decoder's are left alone: inference does
        not decode, and the global self-correlation after the encoders holds no BatchNorm.
        """
        norms = self.encoder_norms()
        momenta = [m.momentum for m in norms]
        self.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        with autocast(x.device, amp):
            self.encode(x, propagation)
        for norm, momentum in zip(norms, momenta, strict=False):
            norm.momentum = momentum
        self.eval()

    @torch.no_grad()
    def infer(self, batch, amp: bool = False, refresh: bool = True) -> ModuleOutput:
        """Evaluation-mode embedding and (once the centres exist) assignments of every cell of ``batch``,
        without the decoder; ``refresh`` first re-estimates the BatchNorm statistics on these cells,
        else the running averages serve."""
        if refresh:
            self.refresh_batchnorm(batch.x, batch.propagation, amp)
        self.eval()
        with autocast(batch.x.device, amp):
            return self(batch.x, batch.adjacency, batch.cell_index, None, decode=False, propagation=batch.propagation)
