"""Layers and the module against dense formulas."""

import numpy as np
import pytest
import torch

from scdefr.nn import SCDEFRModule, TAGConv, global_self_correlation, soft_assignment
from scdefr.options import NetworkOptions


def _normalised_adjacency(n, seed=0):
    rng = np.random.default_rng(seed)
    pattern = rng.random((n, n)) < 0.2
    pattern = (pattern | pattern.T | np.eye(n, dtype=bool)).astype(float)
    d = 1 / np.sqrt(pattern.sum(1))
    return d[:, None] * pattern * d[None, :]


def _sparse(dense):
    return torch.tensor(dense, dtype=torch.float32).to_sparse().coalesce()


@pytest.mark.parametrize("hops", [0, 1, 3])
def test_tagconv_equals_dense_formula(hops):
    torch.manual_seed(0)
    n = 15
    adjacency = _normalised_adjacency(n)
    x = np.random.default_rng(1).normal(size=(n, 6))
    conv = TAGConv(6, 4, hops=hops)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(4))
    got = conv(torch.tensor(x, dtype=torch.float32), _sparse(adjacency)).detach().numpy()
    weights = [lin.weight.detach().double().numpy() for lin in conv.linears]
    expected = sum(np.linalg.matrix_power(adjacency, k) @ x @ weights[k].T for k in range(hops + 1))
    expected = expected + conv.bias.detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert len(conv.linears) == hops + 1


def test_tagconv_propagates_output_width_not_input(monkeypatch):
    """Horner's rule: each hop's sparse product carries out_features columns, not the input's."""
    widths, sparse_mm = [], torch.sparse.mm
    monkeypatch.setattr(torch.sparse, "mm", lambda a, b: widths.append(b.shape[1]) or sparse_mm(a, b))
    conv = TAGConv(50, 4, hops=3)
    conv(torch.randn(15, 50), _sparse(_normalised_adjacency(15)))
    assert widths == [4, 4, 4]


@pytest.mark.parametrize("block_elements", [2**24, 40 * 7], ids=["one-block", "row-blocks"])
def test_global_self_correlation_equals_dense_softmax(block_elements):
    """Values and gradients match the dense formula, also when the CPU path splits rows into blocks."""
    z = torch.randn(40, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    got = global_self_correlation(z, block_elements=block_elements)
    expected = torch.softmax(z @ z.T, dim=1) @ z
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    (grad_got,) = torch.autograd.grad(got.square().sum(), z)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), z)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("block_elements", [2**24, 40 * 7], ids=["one-block", "row-blocks"])
def test_global_self_correlation_attends_to_evenly_spaced_keys_above_max_keys(block_elements):
    """Above max_keys cells every query attends to rows floor(i n / max_keys) only; at or below it, to all."""
    z = torch.randn(40, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    keys = z[[0, 4, 8, 12, 16, 20, 24, 28, 32, 36]]
    got = global_self_correlation(z, max_keys=10, block_elements=block_elements)
    expected = torch.softmax(z @ keys.T, dim=1) @ keys
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    (grad_got,) = torch.autograd.grad(got.square().sum(), z)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), z)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-3, atol=1e-4)
    every_cell = torch.softmax(z @ z.T, dim=1) @ z
    torch.testing.assert_close(global_self_correlation(z, max_keys=40), every_cell, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, every_cell, atol=1e-3)


def test_soft_assignment_is_student_t_kernel():
    rng = np.random.default_rng(3)
    z, centres = rng.normal(size=(8, 3)), rng.normal(size=(4, 3))
    kernel = 1 / (1 + ((z[:, None, :] - centres[None]) ** 2).sum(-1))
    expected = kernel / kernel.sum(1, keepdims=True)
    got = soft_assignment(torch.tensor(z), torch.tensor(centres)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("zinb_form", ["counts", "paper"])
def test_module_forward_shapes_and_size_factors(zinb_form):
    torch.manual_seed(0)
    n, genes = 20, 9
    module = SCDEFRModule(genes, n, NetworkOptions(hidden_dims=(16, 8, 4), zinb_form=zinb_form)).eval()
    x = torch.rand(n, genes)
    adjacency = _sparse(_normalised_adjacency(n))
    index = torch.arange(n)
    out = module(x, adjacency, index, torch.ones(n))
    assert out.z.shape == out.z_ae.shape == out.z_graph.shape == (n, 4)
    assert out.mu.shape == out.theta.shape == out.pi.shape == (n, genes)
    assert out.q is None
    assert ((out.pi > 0) & (out.pi < 1)).all() and (out.theta >= 1e-4).all() and (out.mu >= 1e-5).all()
    doubled = module(x, adjacency, index, torch.full((n,), 2.0))
    factor = 2.0 if zinb_form == "counts" else 1.0  # the paper's form ignores size factors
    torch.testing.assert_close(doubled.mu, out.mu * factor)
    if zinb_form == "paper":
        assert not hasattr(module.decoder, "mu_head")  # one weight matrix for the three heads
    module.set_cluster_centres(torch.randn(3, 4))
    out = module(x, adjacency, index, torch.ones(n))
    for q in (out.q, out.q_ae, out.q_graph):
        assert q.shape == (n, 3)
        torch.testing.assert_close(q.sum(1), torch.ones(n))


def test_gene_wide_decoder_adds_a_block_of_one_unit_per_gene():
    """The paper's decoder: the encoder widths reversed, then Linear-BatchNorm-ReLU-dropout of n_genes units."""
    n, genes = 10, 7
    widths = {}
    for layers in ("mirror", "gene_wide"):
        module = SCDEFRModule(genes, n, NetworkOptions(hidden_dims=(16, 8, 4), decoder_layers=layers)).eval()
        widths[layers] = [block[0].out_features for block in module.decoder.body]
        out = module(torch.rand(n, genes), _sparse(_normalised_adjacency(n)), torch.arange(n), torch.ones(n))
        assert out.mu.shape == (n, genes)
    assert widths == {"mirror": [8, 16], "gene_wide": [8, 16, genes]}
    assert [type(layer) for layer in module.decoder.body[-1]] == [
        torch.nn.Linear,
        torch.nn.BatchNorm1d,
        torch.nn.ReLU,
        torch.nn.Dropout,
    ]


def test_module_fusion_follows_sigma():
    """sigma = 0: the autoencoder's later layers read only the graph encoder, so its own first layer is unused."""
    torch.manual_seed(0)
    n, genes = 12, 5
    module = SCDEFRModule(genes, n, NetworkOptions(hidden_dims=(8, 6, 3), sigma=0.0)).train()
    adjacency = _sparse(_normalised_adjacency(n))
    out = module(torch.rand(n, genes), adjacency, torch.arange(n), torch.ones(n))
    (out.z_ae.sum() + out.z_graph.sum()).backward()
    assert module.autoencoder[0][0].weight.grad is None or not module.autoencoder[0][0].weight.grad.any()
    assert module.graph_encoder[0].conv.linears[0].weight.grad.abs().sum() > 0
