"""Losses of scDEFR: ZINB likelihood, edge-wise graph reconstruction, DEC clustering terms.

All of them are linear in the number of cells (and edges): nothing builds an n x n matrix.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

EPS = 1e-10


def zinb_negative_log_likelihood(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi: torch.Tensor, eps: float = EPS
) -> torch.Tensor:
    r"""Mean negative log-likelihood of ``x`` under a zero-inflated negative binomial.

    The negative binomial has mean ``mu`` and inverse dispersion ``theta``
    (:math:`\mathrm{Var} = \mu + \mu^2/\theta`); ``pi`` is the probability of an extra zero:

    .. math:: P(0) = \pi + (1-\pi)\left(\tfrac{\theta}{\theta+\mu}\right)^\theta, \quad
              P(x>0) = (1-\pi)\,\mathrm{NB}(x;\mu,\theta)

    Computed in log space (``logaddexp`` for the zero case) and averaged over all entries, as the
    paper (after DCA) averages it. ``x`` need not be integer: the paper's form fits log-normalised values.
    """
    x, mu, theta, pi = x.float(), mu.float(), theta.float(), pi.float()
    log_theta_mu = torch.log(theta + mu + eps)
    log_nb_zero = theta * (torch.log(theta + eps) - log_theta_mu)
    log_nb = (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + log_nb_zero
        + x * (torch.log(mu + eps) - log_theta_mu)
    )
    log_zero = torch.logaddexp(torch.log(pi + eps), torch.log(1.0 - pi + eps) + log_nb_zero)
    log_positive = torch.log(1.0 - pi + eps) + log_nb
    return -torch.where(x < 1e-8, log_zero, log_positive).mean()


def pair_logits(z: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``z_i . z_j`` for each pair ``(rows[e], cols[e])``.

    ``index_select`` rather than ``z[cols]``: the end points are unsorted and repeat, and on the CPU
    the backward of plain indexing adds them up in an order that depends on the threads, so runs with
    more than one thread drifted apart (about 1e-2 in the embedding after a run); this one repeats bitwise.
    """
    return (z.index_select(0, rows) * z.index_select(0, cols)).sum(dim=1)


def edge_reconstruction_loss(
    z: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor, n_cells: int
) -> torch.Tensor:
    r"""The paper's adjacency reconstruction loss, evaluated on the edges only.

    The paper computes ``mean_i sum_j [A_ij != 0] (sigmoid(z_i . z_j) - A_ij)^2`` over the dense
    n x n matrix; the mask keeps only the non-zeros of ``A``, so summing over the edge list
    ``(rows, cols, weights)`` and dividing by ``n_cells`` is the same number at O(edges) cost.
    """
    logits = pair_logits(z.float(), rows, cols)
    return (torch.sigmoid(logits) - weights.float()).pow(2).sum() / n_cells


def sampled_edge_loss(z: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_cells: int) -> torch.Tensor:
    r"""Graph-autoencoder reconstruction (Kipf & Welling 2016, as PyG's ``GAE.recon_loss``), linear in edges.

    .. math:: -\operatorname{mean}_{(i,j) \in E} \log \sigma(z_i \cdot z_j)
              -\operatorname{mean}_{(i,j) \sim U} \log (1 - \sigma(z_i \cdot z_j))

    over the graph's edges and as many cell pairs drawn uniformly (from torch's global generator, so
    a seeded epoch draws the same pairs). Why not the paper's term: its targets are the normalised
    weights (about 1/k), so it pulls neighbours *apart* and, once the sigmoid saturates, gives no
    signal at all; here neighbours are pulled together and random pairs apart.
    """
    z = z.float()
    positive = pair_logits(z, rows, cols)
    sampled_rows = torch.randint(n_cells, rows.shape, device=z.device)
    sampled_cols = torch.randint(n_cells, rows.shape, device=z.device)
    negative = pair_logits(z, sampled_rows, sampled_cols)
    return F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive)) + F.binary_cross_entropy_with_logits(
        negative, torch.zeros_like(negative)
    )


def target_distribution(
    q: torch.Tensor, frequencies: torch.Tensor | None = None, balance: float = 1.0, detach: bool = True
) -> torch.Tensor:
    r"""DEC's sharpened target :math:`p_{ij} = (q_{ij}^2 / f_j^b) / \sum_{j'} (q_{ij'}^2 / f_{j'}^b)`.

    :math:`f_j = \sum_i q_{ij}` are the soft cluster sizes.

    ``balance`` is the exponent b: 1 is DEC's target; larger values lower the target of large
    clusters further, so cells at their borders move to smaller ones; 0 only sharpens.

    ``frequencies`` are the soft cluster sizes f over *all* cells, for when ``q`` holds a mini-batch:
    a Cluster-GCN batch covers a few graph communities, and its own f would inflate the clusters
    absent from it, pulling its cells towards them. Only the ratios of f matter. ``detach`` (default)
    holds the target fixed within a step, the estimator DEC defines; ``False`` lets gradients flow
    through it as well, as the paper's code does.
    """
    q = q.detach() if detach else q
    f = q.sum(dim=0, keepdim=True) if frequencies is None else frequencies.reshape(1, -1).to(q)
    weight = q.pow(2) / f.pow(balance)
    return weight / weight.sum(dim=1, keepdim=True)


def kl_clustering_loss(q: torch.Tensor, p: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``KL(P || Q)`` averaged over cells (``reduction='batchmean'``), the DEC clustering loss."""
    return F.kl_div(torch.log(q.float() + eps), p.float(), reduction="batchmean")
