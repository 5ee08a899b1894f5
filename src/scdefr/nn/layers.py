"""Building blocks of the scDEFR network, each a small module or function with the formula it computes."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


# Ours rather than torch_geometric.nn.TAGConv: the same output, but propagating the output width instead of the
# genes takes less time and memory per layer (BENCHMARKS.md, benchmarks/tagconv_cost.py).
class TAGConv(nn.Module):
    r"""Topology-adaptive graph convolution (Du et al. 2017), with PyTorch Geometric's semantics.

    .. math:: H' = \sum_{k=0}^{K} (\hat{A}^k H)\, W_k + b

    ``adjacency`` is the already normalised sparse matrix :math:`\hat{A}` (a batch's ``propagation``:
    ``D^-1/2 (A + I) D^-1/2``, see :func:`scdefr.adjacency.propagation`), so unlike
    ``torch_geometric.nn.TAGConv(normalize=True)`` nothing is normalised here. Propagation is a torch
    sparse matmul: memory is linear in the number of edges.

    The sum is evaluated by Horner's rule, :math:`H W_0 + \hat{A}(H W_1 + \hat{A}(H W_2 + \hat{A} H W_3))`:
    the hops then carry ``out_features`` columns rather than ``in_features`` (256 rather than 2,000
    genes in the first layer), so neither the whole-graph pass nor the backward pass holds a
    propagated copy of the input. The sparse product runs in float32 even under autocast
    (half-precision sparse kernels are patchy).
    """

    def __init__(self, in_features: int, out_features: int, hops: int = 3, bias: bool = True):
        super().__init__()
        if hops < 0:
            raise ValueError(f"hops must be >= 0, got {hops}")
        self.hops = hops
        self.linears = nn.ModuleList(nn.Linear(in_features, out_features, bias=False) for _ in range(hops + 1))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        out = self.linears[-1](h).float()
        for linear in reversed(self.linears[:-1]):
            with torch.autocast(device_type=out.device.type, enabled=False):
                out = torch.sparse.mm(adjacency, out)
            out = out + linear(h)
        if self.bias is not None:
            out = out + self.bias
        return out


class DenseBlock(nn.Sequential):
    """Linear -> BatchNorm1d(momentum=0.01, eps=1e-3) -> ReLU -> Dropout: one layer of the autoencoder."""

    def __init__(self, in_features: int, out_features: int, dropout: float):
        super().__init__(
            nn.Linear(in_features, out_features),
            nn.BatchNorm1d(out_features, momentum=0.01, eps=1e-3),
            nn.ReLU(),
            nn.Dropout(dropout),
        )


class GraphBlock(nn.Module):
    """TAGConv -> Dropout, no activation (as in the paper): one layer of the graph encoder."""

    def __init__(self, in_features: int, out_features: int, hops: int, dropout: float):
        super().__init__()
        self.conv = TAGConv(in_features, out_features, hops=hops)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.conv(h, adjacency))


# Largest score block (rows x keys) the CPU path holds at once: 2**24 floats = 64 MB.
ATTENTION_BLOCK_ELEMENTS = 2**24

# Most cells the global self-correlation attends to: above, an evenly spaced subset of keys keeps a
# whole-graph pass linear in the cells (benchmarks/attention_keys.py measures the cost and the effect).
ATTENTION_MAX_KEYS = 20_000


def global_self_correlation(
    z: torch.Tensor, max_keys: int = ATTENTION_MAX_KEYS, block_elements: int = ATTENTION_BLOCK_ELEMENTS
) -> torch.Tensor:
    r"""``softmax(z k^T) k`` with keys ``k`` the rows of z (or a subset), never materialising n x n scores.

    One attention head with query = key = value = z and scale 1: each output is a softmax-weighted
    mean over the keys. Above ``max_keys`` cells the keys are every (n / ``max_keys``)-th cell in
    the input's order (deterministic, spread over the whole input), so the cost is n x ``max_keys``
    rather than n x n. Training in Cluster-GCN batches attends within about 2,048 cells, so no
    trained weight relies on more keys.

    On CUDA the fused ``scaled_dot_product_attention`` kernels do it in linear memory. On CPU,
    PyTorch's flash kernel has a very slow backward for the small head dimension used here (4 s per
    call at 3,000 cells, most of an epoch), so the CPU path walks over blocks of query rows instead:
    each block's scores (at most ``block_elements`` floats) are recomputed in the backward pass
    rather than stored, so memory stays linear in the number of cells.
    """
    keys = attention_keys(z, max_keys)
    if z.is_cuda:
        # (batch=1, heads=1, cells, dim): the fused kernels need 4-D input
        queries, keys = z.unsqueeze(0).unsqueeze(0), keys.unsqueeze(0).unsqueeze(0)
        return F.scaled_dot_product_attention(queries, keys, keys, scale=1.0)[0, 0]
    rows = max(1, block_elements // max(1, keys.shape[0]))
    if rows >= z.shape[0]:
        return _attend(z, keys)
    blocks = [
        checkpoint(_attend, z[start : start + rows], keys, use_reentrant=False) for start in range(0, z.shape[0], rows)
    ]
    return torch.cat(blocks)


def attention_keys(z: torch.Tensor, max_keys: int) -> torch.Tensor:
    """All rows of ``z`` up to ``max_keys`` of them, else rows ``floor(i n / max_keys)``, i < ``max_keys``."""
    if z.shape[0] <= max_keys:
        return z
    return z[torch.arange(max_keys, device=z.device) * z.shape[0] // max_keys]


def _attend(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return torch.softmax(queries @ keys.T, dim=1) @ keys


def soft_assignment(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    r"""Student's t kernel (one degree of freedom) between cells and cluster centres, as in DEC.

    .. math:: q_{ij} = \frac{(1 + \lVert z_i - \mu_j \rVert^2)^{-1}}
                            {\sum_{j'} (1 + \lVert z_i - \mu_{j'} \rVert^2)^{-1}}
    """
    squared_distance = (z.float().unsqueeze(1) - centres.float().unsqueeze(0)).pow(2).sum(dim=2)
    kernel = 1.0 / (1.0 + squared_distance)
    return kernel / kernel.sum(dim=1, keepdim=True)
