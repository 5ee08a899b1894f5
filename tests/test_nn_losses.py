"""The losses against independent formulas (scipy, dense numpy)."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit, rel_entr

from scdefr.nn import (
    edge_reconstruction_loss,
    kl_clustering_loss,
    sampled_edge_loss,
    target_distribution,
    zinb_negative_log_likelihood,
)


@pytest.fixture
def zinb_params():
    rng = np.random.default_rng(1)
    shape = (20, 7)
    mu = rng.uniform(0.1, 30.0, shape)
    theta = rng.uniform(0.2, 10.0, shape)
    x = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    x[0, :] = 0  # make sure both branches occur
    return x, mu, theta


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def test_zinb_without_inflation_is_negative_binomial(zinb_params):
    x, mu, theta = zinb_params
    expected = -stats.nbinom.logpmf(x, theta, theta / (theta + mu)).mean()
    got = zinb_negative_log_likelihood(_t(x), _t(mu), _t(theta), _t(np.zeros_like(x)))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_zinb_with_inflation_matches_hand_computation(zinb_params):
    x, mu, theta = zinb_params
    pi = np.random.default_rng(2).uniform(0.05, 0.9, x.shape)
    nb_zero = stats.nbinom.pmf(0, theta, theta / (theta + mu))
    log_nb = stats.nbinom.logpmf(x, theta, theta / (theta + mu))
    per_entry = np.where(x == 0, -np.log(pi + (1 - pi) * nb_zero), -np.log(1 - pi) - log_nb)
    got = zinb_negative_log_likelihood(_t(x), _t(mu), _t(theta), _t(pi))
    assert got.item() == pytest.approx(per_entry.mean(), rel=1e-5)


def test_zinb_gradient_is_finite_for_extreme_parameters():
    mu = torch.tensor([1e-5, 1e6, 3.0], requires_grad=True)
    theta = torch.tensor([1e-4, 1e4, 1.0], requires_grad=True)
    pi = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    loss = zinb_negative_log_likelihood(torch.tensor([0.0, 5.0, 2.0]), mu, theta, pi)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in (mu, theta, pi))


def test_edge_reconstruction_equals_dense_masked_loss():
    rng = np.random.default_rng(3)
    n = 12
    pattern = rng.random((n, n)) < 0.3
    pattern = pattern | pattern.T | np.eye(n, dtype=bool)
    weights = np.where(pattern, rng.uniform(0.05, 0.5, (n, n)), 0.0)
    weights = (weights + weights.T) / 2
    z = rng.normal(size=(n, 4))
    # the paper's loss: mask = sign(A); mean over rows of the row sums of squared masked errors
    dense = (((expit(z @ z.T) - weights) * np.sign(weights)) ** 2).sum(axis=1).mean()
    rows, cols = np.nonzero(weights)
    got = edge_reconstruction_loss(_t(z), torch.tensor(rows), torch.tensor(cols), _t(weights[rows, cols]), n_cells=n)
    assert got.item() == pytest.approx(dense, rel=1e-6)


def test_target_distribution_and_kl_match_hand_computation():
    rng = np.random.default_rng(4)
    q = rng.random((9, 3))
    q /= q.sum(axis=1, keepdims=True)
    weight = q**2 / q.sum(axis=0)
    p = weight / weight.sum(axis=1, keepdims=True)
    q_t = _t(q).requires_grad_()
    p_t = target_distribution(q_t)
    assert not p_t.requires_grad  # fixed target within a step, as DEC
    np.testing.assert_allclose(p_t.numpy(), p, rtol=1e-12)
    np.testing.assert_allclose(p_t.sum(1).numpy(), 1.0)
    expected_kl = rel_entr(p, q).sum() / q.shape[0]
    assert kl_clustering_loss(q_t, p_t).item() == pytest.approx(expected_kl, rel=1e-6)
    # DEC sharpens: each cell's strongest assignment gets stronger
    assert np.all(p.max(axis=1) >= q.max(axis=1) - 1e-12)


def test_target_gradient_through_is_the_total_derivative():
    """The paper's code lets gradients flow through P: with ``detach=False`` autograd gives the total
    derivative of BCE(q, P(q)) (gradcheck against finite differences); the detached target does not."""
    logits = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)

    def loss(detach):
        def bce(values):
            q = torch.softmax(values, dim=1)
            return torch.nn.functional.binary_cross_entropy(q, target_distribution(q, detach=detach))

        return bce

    assert torch.autograd.gradcheck(loss(False), (logits,))
    assert not torch.autograd.gradcheck(loss(True), (logits,), raise_exception=False)
    assert target_distribution(torch.softmax(logits, dim=1), detach=False).requires_grad


def test_cluster_balance_is_the_exponent_on_the_cluster_sizes():
    """b = 0 only sharpens; b = 2 divides by f squared, so a cell between a large and a small
    cluster is pulled further towards the small one than DEC (b = 1) pulls it."""
    rng = np.random.default_rng(6)
    q = rng.dirichlet([4.0, 1.0], size=40)  # cluster 0 much larger
    for balance in (0.0, 2.0):
        weight = q**2 / q.sum(axis=0) ** balance
        expected = weight / weight.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(target_distribution(_t(q), balance=balance).numpy(), expected, rtol=1e-12)
    small_share = {b: target_distribution(_t(q), balance=b).numpy()[:, 1].mean() for b in (0.0, 1.0, 2.0)}
    assert small_share[0.0] < small_share[1.0] < small_share[2.0]


def test_batch_target_with_global_frequencies_equals_the_full_target():
    """A mini-batch's target from the cluster sizes of all cells is the full-data target's rows; with
    the batch's own sizes it is not (the batch misses most of the cluster 2 cells)."""
    rng = np.random.default_rng(5)
    q = rng.dirichlet([1.0, 1.0, 1.0], size=30)
    q[:20, 2] *= 0.1
    q /= q.sum(axis=1, keepdims=True)
    full = target_distribution(_t(q)).numpy()
    batch = _t(q[:10])
    with_global = target_distribution(batch, _t(q.sum(axis=0))).numpy()
    np.testing.assert_allclose(with_global, full[:10], rtol=1e-12)
    assert not np.allclose(target_distribution(batch).numpy(), full[:10], rtol=1e-3)


def test_sampled_edge_loss_matches_formula_with_the_same_draws():
    rng = np.random.default_rng(4)
    n, d = 15, 3
    rows, cols = np.nonzero(rng.random((n, n)) < 0.2)
    z = rng.normal(size=(n, d))
    torch.manual_seed(7)
    got = sampled_edge_loss(_t(z), torch.tensor(rows), torch.tensor(cols), n_cells=n)
    torch.manual_seed(7)  # the loss draws rows then cols of its random pairs from the global generator
    sampled_rows = torch.randint(n, (len(rows),)).numpy()
    sampled_cols = torch.randint(n, (len(rows),)).numpy()
    positive = (z[rows] * z[cols]).sum(axis=1)
    negative = (z[sampled_rows] * z[sampled_cols]).sum(axis=1)
    expected = -np.log(expit(positive)).mean() - np.log(1.0 - expit(negative)).mean()
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_sampled_edge_loss_pulls_neighbours_together():
    """Unlike the paper's term (targets ~1/k push neighbours apart), minimising it groups communities."""
    n = 20
    community = np.repeat([0, 1], n // 2)
    rows, cols = np.nonzero((community[:, None] == community[None, :]) & ~np.eye(n, dtype=bool))
    torch.manual_seed(0)
    z = torch.nn.Parameter(torch.randn(n, 4) * 0.1)
    optimiser = torch.optim.Adam([z], lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        sampled_edge_loss(z, torch.tensor(rows), torch.tensor(cols), n_cells=n).backward()
        optimiser.step()
    unit = torch.nn.functional.normalize(z.detach(), dim=1).numpy()
    cosine = unit @ unit.T
    same = community[:, None] == community[None, :]
    assert cosine[same & ~np.eye(n, dtype=bool)].mean() > 0.8
    assert cosine[~same].mean() < 0.0


@pytest.mark.parametrize("loss", ["sampled", "paper"])
def test_edge_loss_gradients_repeat_bitwise_with_several_threads(loss):
    """The edges' end points are unsorted and repeat; the backward of plain indexing (``z[cols]``)
    accumulates them in a thread-dependent order on the CPU, so 2-thread runs drifted apart."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generator = torch.Generator().manual_seed(0)
        z = torch.randn(3000, 16, generator=generator)
        rows = torch.randint(3000, (60000,), generator=generator).sort().values
        cols = torch.randint(3000, (60000,), generator=generator)
        weights = torch.rand(60000, generator=generator)
        gradients = []
        for _ in range(10):
            leaf = z.clone().requires_grad_()
            torch.manual_seed(1)
            if loss == "sampled":
                value = sampled_edge_loss(leaf, rows, cols, 3000)
            else:
                value = edge_reconstruction_loss(leaf, rows, cols, weights, 3000)
            value.backward()
            gradients.append(leaf.grad)
    finally:
        torch.set_num_threads(threads)
    for gradient in gradients[1:]:
        assert torch.equal(gradient, gradients[0])
