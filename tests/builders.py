"""Small test inputs built in memory, shared by several test files."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.neighbors import kneighbors_graph

from scdefr.adjacency import normalized_adjacency

# Training options for make_graph_adata's cells. QUICK exercises the code paths; ACCURATE trains long
# enough (still seconds) to recover the planted types. With so few epochs sigma=0.5 (more of the
# batch-normalised autoencoder in the fused layers) converges far more reliably than the paper's 0.1.
QUICK = dict(hidden_dims=(32, 16, 8), pretrain_epochs=8, epochs=6, kmeans_n_init=2, batch_size=0)
ACCURATE = {**QUICK, "sigma": 0.5, "pretrain_epochs": 120, "epochs": 20}


def make_counts(n_cells: int = 120, n_genes: int = 150, seed: int = 0) -> ad.AnnData:
    """Raw counts of two cell types (obs['cell_type']) with three mitochondrial genes, as 'scdefr qc' reads them."""
    rng = np.random.default_rng(seed)
    types = np.arange(n_cells) % 2
    means = np.tile(rng.lognormal(-0.5, 1.0, size=n_genes), (2, 1))
    means[0, :20] *= 6
    means[1, 20:40] *= 6
    matrix = rng.poisson(means[types]).astype(np.float32)
    genes = [f"Gene{i}" for i in range(n_genes - 3)] + ["MT-CO1", "MT-CO2", "MT-ND1"]
    obs = pd.DataFrame({"cell_type": [f"t{t}" for t in types]}, index=[f"cell{i}" for i in range(n_cells)])
    return ad.AnnData(sp.csr_matrix(matrix), obs=obs, var=pd.DataFrame(index=genes))


def make_graph_adata(n_cells=240, n_genes=50, n_types=4, seed=0) -> ad.AnnData:
    """A graph h5ad as 'scdefr graph' writes it (X, layers['counts'], size factors, adjacency) with
    well-separated planted types in obs['cell_type'], made in milliseconds (no PCA, no numba)."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    profiles = rng.gamma(2.0, 1.0, (n_types, n_genes))
    mean = profiles[types] * rng.lognormal(0.0, 0.3, (n_cells, 1)) * 3
    counts = rng.negative_binomial(5, 5 / (5 + mean)).astype(np.float32)
    library = counts.sum(axis=1)
    x = np.log1p(counts / library[:, None] * 1e4).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(x))
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.obs["size_factors"] = library / np.median(library)
    adata.obs["cell_type"] = pd.Categorical([f"type{t}" for t in types])
    adata.obsp["scdefr_adjacency"] = normalized_adjacency(kneighbors_graph(x, 10, include_self=False))
    return adata


def make_plan(graph, module=None, *, n_clusters=3, seed=0, **training):
    """A TrainingPlan over ``graph`` whose centres come from KMeans at ``n_clusters`` (no model around it)."""
    import torch

    from scdefr.clustering import kmeans_centres
    from scdefr.nn import SCDEFRModule
    from scdefr.options import NetworkOptions, RuntimeOptions, TrainingOptions
    from scdefr.plan import TrainingPlan, TrainingState

    if module is None:
        module = SCDEFRModule(graph.n_genes, graph.n_cells, NetworkOptions(hidden_dims=QUICK["hidden_dims"]))

    def init_centres(embedding):
        return (
            *kmeans_centres(embedding, n_clusters, n_init=2, seed=seed),
            {"n_clusters": n_clusters, "method": "given"},
        )

    return TrainingPlan(
        module,
        graph,
        TrainingOptions(**training),
        RuntimeOptions(),
        seed,
        torch.device("cpu"),
        init_centres,
        lambda: {"options": {}, "cells": ""},
        TrainingState(),
    )
