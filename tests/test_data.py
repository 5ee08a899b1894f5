"""The data layer: the graph's arrays, the encoders' input and Cluster-GCN batches."""

import numpy as np
import pytest
import torch
from builders import ACCURATE, make_graph_adata
from sklearn.metrics import adjusted_rand_score

from scdefr import tl
from scdefr.data import CellGraph, make_batch, partition_cells


def test_mini_batches_cover_cells_and_renormalise_subgraph():
    adata = make_graph_adata()
    graph = CellGraph.from_anndata(adata)
    parts = partition_cells(graph, batch_size=60, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(adata.n_obs))
    cells = np.sort(np.concatenate(parts[:4]))
    batch = make_batch(graph, cells, torch.device("cpu"))
    sub = adata.obsp["scdefr_adjacency"][cells][:, cells].toarray()
    pattern = (sub != 0).astype(float)
    expected = pattern / np.sqrt(pattern.sum(1))[:, None] / np.sqrt(pattern.sum(1))[None, :]
    np.testing.assert_allclose(batch.adjacency.to_dense().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(batch.edge_weights.numpy(), sub[batch.edge_rows.numpy(), batch.edge_cols.numpy()])
    # Cluster-GCN parts follow the data, so a batch keeps most of its cells' edges
    full = adata.obsp["scdefr_adjacency"][cells]
    assert np.count_nonzero(sub) / full.nnz > 0.5

    tl.scdefr(adata, 4, **{**ACCURATE, "batch_size": 120})
    assert adata.uns["scdefr"]["params"]["batch_size_used"] == 120
    # an approximation: on 240 cells two batches lose much of the graph, yet the types still show
    assert adjusted_rand_score(adata.obs["cell_type"], adata.obs["scdefr_cluster"]) > 0.9


def test_two_level_partition_covers_cells_with_local_parts():
    """Above ``flat_max_parts``, two KMeans levels (flat KMeans is quadratic in the cells):
    still every cell once, about as many parts, as local as the flat ones (almost all of a part's
    cells share one planted type), repeatable by seed."""
    adata = make_graph_adata(n_cells=480)
    graph = CellGraph.from_anndata(adata)
    flat = partition_cells(graph, batch_size=20, seed=0)  # 96 parts: flat
    parts = partition_cells(graph, batch_size=20, seed=0, flat_max_parts=8)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(adata.n_obs))
    assert abs(len(parts) - len(flat)) <= 5
    types = adata.obs["cell_type"].to_numpy()

    def purity(partition):
        return np.mean([np.unique(types[part], return_counts=True)[1].max() / len(part) for part in partition])

    assert purity(parts) > 0.95 and purity(flat) > 0.95
    again = partition_cells(graph, batch_size=20, seed=0, flat_max_parts=8)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=False)) and len(parts) == len(again)


@pytest.mark.parametrize("sparse_x", [False, True])
def test_scaled_encoder_input_equals_scanpy_scale(sparse_x):
    """The encoders see X as sc.pp.scale(X, max_value=10) gives it, whether X is stored sparse or not;
    with input_scaling='none' they see X itself (the paper's code)."""
    import scanpy as sc
    import scipy.sparse as sp

    adata = make_graph_adata(n_cells=60)
    x = adata.X.toarray()
    x[:, 0] = 0.0  # a constant gene: scanpy leaves it at 0
    x[0, 1] = 50.0  # an outlier: clipped at 10
    expected = sc.pp.scale(x.copy(), max_value=10)
    adata.X = sp.csr_matrix(x) if sparse_x else x
    graph = CellGraph.from_anndata(adata)
    np.testing.assert_allclose(graph.encoder_input(None), expected, rtol=1e-4, atol=1e-4)
    cells = np.array([5, 2, 40])
    np.testing.assert_allclose(graph.encoder_input(cells), expected[cells], rtol=1e-4, atol=1e-4)
    unscaled = CellGraph.from_anndata(adata, input_scaling="none")
    np.testing.assert_array_equal(unscaled.encoder_input(None), x)
