"""scdefr.pp: QC filters and normalisation follow the contract; the graph is the paper's normalised kNN adjacency."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.neighbors import kneighbors_graph

from scdefr import pl, pp
from scdefr.adjacency import normalized_adjacency, propagation
from scdefr.errors import ScdefrError

N_TYPES = 3


def make_counts(n_cells: int = 300, n_genes: int = 400, *, seed: int = 0, n_mito: int = 5) -> ad.AnnData:
    """Counts of three cell types (each with its own 30 marker genes), the last ``n_mito`` genes MT-.

    The first 6 cells are dying (most counts mitochondrial) and the next 4 nearly empty (5 genes).
    """
    rng = np.random.default_rng(seed)
    types = np.arange(n_cells) % N_TYPES
    means = np.tile(rng.lognormal(-1.0, 1.0, size=n_genes), (N_TYPES, 1))
    for t in range(N_TYPES):
        means[t, t * 30 : (t + 1) * 30] *= 8.0
    means[:, -n_mito:] = 0.3
    matrix = rng.poisson(means[types] * rng.uniform(0.5, 1.5, size=(n_cells, 1))).astype(np.float32)
    matrix[:6, -n_mito:] = 400.0
    matrix[6:10] = 0
    matrix[6:10, 100:105] = 1
    genes = [f"Gene{i}" for i in range(n_genes - n_mito)] + [f"MT-G{i}" for i in range(n_mito)]
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type{t}" for t in types])}, index=[f"cell{i}" for i in range(n_cells)]
    )
    return ad.AnnData(sparse.csr_matrix(matrix), obs=obs, var=pd.DataFrame(index=genes))


@pytest.fixture(scope="module")
def counts() -> ad.AnnData:
    return make_counts()


@pytest.fixture(scope="module")
def qced(counts) -> ad.AnnData:
    return pp.qc(counts.copy(), n_top_genes=200)


@pytest.fixture(scope="module")
def graphed(qced) -> ad.AnnData:
    adata = qced.copy()
    pp.build_graph(adata, n_pcs=20, n_neighbors=10, seed=0)
    return adata


# -- qc ----------------------------------------------------------------------------------------


def test_qc_filters_dying_and_empty_cells(counts, qced):
    removed = set(counts.obs_names) - set(qced.obs_names)
    assert removed == {f"cell{i}" for i in range(10)}
    steps = qced.uns["scdefr_qc"]["summary"]["steps"]
    assert steps["min_genes"]["cells"] == counts.n_obs - 4
    assert steps["max_pct_mito"]["cells"] == counts.n_obs - 10
    assert qced.uns["scdefr_qc"]["summary"]["mito_genes"] == 5
    assert qced.uns["scdefr_qc"]["summary"]["step_order"][-1] == "highly_variable"


def test_qc_output_contract(counts, qced):
    assert qced.n_vars == 200 and qced.var["highly_variable"].all()
    assert sparse.issparse(qced.X) and qced.X.format == "csr" and qced.X.dtype == np.float32
    raw = qced.layers["counts"]
    assert sparse.issparse(raw) and raw.dtype == np.float32
    expected = counts[qced.obs_names, qced.var_names].X.toarray()
    np.testing.assert_array_equal(raw.toarray(), expected)
    # X is log1p of counts scaled to the median library size computed over all kept genes
    library = qced.obs["n_counts"].to_numpy()
    scaled = np.expm1(qced.X.toarray()) * (library / np.median(library))[:, None]
    np.testing.assert_allclose(scaled, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(qced.obs["size_factors"], library / np.median(library))
    for column in ("n_counts", "n_genes", "pct_counts_mt"):
        assert column in qced.obs
    assert {"means", "dispersions", "mt"} <= set(qced.var.columns)
    assert qced.obs["cell_type"].equals(counts.obs.loc[qced.obs_names, "cell_type"])


def test_highly_variable_genes_include_the_markers(qced):
    """200 of ~390 genes are kept, yet nearly all 90 cell-type markers are among them."""
    markers = {f"Gene{i}" for i in range(N_TYPES * 30)}
    assert len(markers & set(qced.var_names)) >= 0.9 * len(markers)


def test_qc_accepts_dense_integer_counts(counts):
    dense = ad.AnnData(counts.X.toarray().astype(np.int64), obs=counts.obs.copy(), var=counts.var.copy())
    result = pp.qc(dense, n_top_genes=100)
    assert sparse.issparse(result.X) and result.X.dtype == np.float32
    assert sparse.issparse(result.layers["counts"]) and result.layers["counts"].dtype == np.float32


def test_qc_keeps_all_genes_when_fewer_than_n_top_genes(counts):
    result = pp.qc(counts.copy())  # default 2000 > 400 genes
    assert result.n_vars == counts.n_vars
    assert result.uns["scdefr_qc"]["summary"]["steps"]["highly_variable"]["threshold"] == counts.n_vars


def test_qc_never_reads_labels(counts):
    shuffled = counts.copy()
    shuffled.obs["cell_type"] = shuffled.obs["cell_type"].to_numpy()[::-1]
    a, b = pp.qc(counts.copy(), n_top_genes=150), pp.qc(shuffled, n_top_genes=150)
    assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
    assert (a.X != b.X).nnz == 0


def test_qc_adds_metrics_to_input(counts):
    adata = counts.copy()
    pp.qc(adata, n_top_genes=100)
    np.testing.assert_allclose(adata.obs["n_counts"], np.asarray(counts.X.sum(axis=1)).ravel())
    assert adata.obs["pct_counts_mt"].iloc[0] > 50  # a dying cell


def test_mito_genes_found_through_symbol_column(counts):
    adata = counts.copy()
    adata.var["gene_symbols"] = adata.var_names
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    assert pp.mito_genes(adata).sum() == 5


def test_all_cells_filtered_out(counts):
    with pytest.raises(ScdefrError, match="all 300 cells were filtered out.*min_genes"):
        pp.qc(counts.copy(), min_genes=10_000)


def test_all_genes_filtered_out(counts):
    with pytest.raises(ScdefrError, match="all .* genes were filtered out"):
        pp.qc(counts.copy(), min_cells=10_000)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_genes": -1}, "--min-genes"),
        ({"max_pct_mito": 120}, "--max-pct-mito"),
        ({"n_top_genes": 0}, "--n-top-genes"),
        ({"min_counts": 500, "max_counts": 100}, "--max-counts"),
    ],
)
def test_impossible_qc_parameters(counts, kwargs, message):
    with pytest.raises(ScdefrError, match=message):
        pp.qc(counts.copy(), **kwargs)


def test_qc_refuses_normalised_input(counts):
    adata = counts.copy()
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray() * 0.5))
    with pytest.raises(ScdefrError, match="log-transformed"):
        pp.qc(adata)


def test_max_counts_filter(counts):
    library = np.asarray(counts.X.sum(axis=1)).ravel()
    limit = int(np.percentile(library, 90))
    result = pp.qc(counts.copy(), max_counts=limit, n_top_genes=100)
    assert (result.obs["n_counts"] <= limit).all()
    assert result.uns["scdefr_qc"]["summary"]["steps"]["max_counts"]["cells"] < counts.n_obs - 10


def scanpy_seurat_genes(log_normalised: ad.AnnData, n_top_genes: int) -> ad.AnnData:
    import scanpy as sc

    reference = log_normalised.copy()
    sc.pp.highly_variable_genes(reference, flavor="seurat", n_top_genes=n_top_genes)
    return reference


@pytest.mark.parametrize("n_top_genes", [50, 150, 300])
def test_highly_variable_genes_are_scanpys_seurat_genes(counts, n_top_genes):
    """Summed over blocks of cells (so no copy of the matrix), the same genes and statistics as
    scanpy's flavor='seurat'; block boundaries do not matter."""
    import scanpy as sc

    from scdefr.pp import _qc

    adata = counts.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    reference = scanpy_seurat_genes(adata, n_top_genes)
    for block_cells in (7, 8192):
        stats = pp.seurat_dispersions(adata.X, block_cells=block_cells)
        np.testing.assert_array_equal(_qc._highly_variable(stats, n_top_genes), reference.var["highly_variable"])
        for column in ("means", "dispersions", "dispersions_norm"):
            np.testing.assert_allclose(stats[column], reference.var[column], rtol=1e-5, atol=1e-6)


def scanpy_qc_metrics(adata: ad.AnnData) -> None:
    """pp.qc_metrics' columns as scanpy's calculate_qc_metrics computes them."""
    import scanpy as sc

    adata.var["mt"] = pp.mito_genes(adata)
    obs, var = sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=False)
    adata.obs["n_counts"] = obs["total_counts"].to_numpy(dtype=np.float64)
    adata.obs["n_genes"] = obs["n_genes_by_counts"].to_numpy(dtype=np.int64)
    adata.obs["pct_counts_mt"] = np.nan_to_num(obs["pct_counts_mt"].to_numpy(dtype=np.float64), nan=0.0)
    adata.var["n_cells"] = var["n_cells_by_counts"].to_numpy(dtype=np.int64)


@pytest.mark.parametrize("block_cells", [7, 8192])
def test_qc_metrics_are_scanpys(counts, monkeypatch, block_cells):
    """Summed block by block, scanpy's totals and counts of non-zeros; an empty cell gets 0% mito."""
    from scdefr.pp import _blocks

    monkeypatch.setattr(_blocks, "BLOCK_CELLS", block_cells)
    matrix = counts.X.toarray()
    matrix[11] = 0
    for X in (sparse.csr_matrix(matrix), matrix.astype(np.int64), sparse.csc_matrix(matrix)):
        mine, theirs = (ad.AnnData(X, obs=counts.obs.copy(), var=counts.var.copy()) for _ in range(2))
        pp.qc_metrics(mine)
        scanpy_qc_metrics(theirs)
        for column in ("n_counts", "n_genes"):
            np.testing.assert_array_equal(mine.obs[column], theirs.obs[column])
            assert mine.obs[column].dtype == theirs.obs[column].dtype
        np.testing.assert_allclose(mine.obs["pct_counts_mt"], theirs.obs["pct_counts_mt"], rtol=1e-6)
        assert mine.obs["pct_counts_mt"].iloc[11] == 0.0
        np.testing.assert_array_equal(mine.var["n_cells"], theirs.var["n_cells"])
        np.testing.assert_array_equal(mine.var["mt"], theirs.var["mt"])


def scanpy_qc(
    adata: ad.AnnData, *, min_genes=20, min_counts=1, max_pct_mito=20.0, min_cells=3, n_top_genes=2000
) -> ad.AnnData:
    """What pp.qc computes, written with scanpy's own steps and whole-matrix copies: the reference
    the block-wise implementation must repeat."""
    import scanpy as sc

    adata = adata.copy()
    scanpy_qc_metrics(adata)
    obs = adata.obs
    keep = (
        (obs["n_genes"] >= min_genes) & (obs["n_counts"] >= min_counts) & (obs["pct_counts_mt"] <= max_pct_mito)
    ).to_numpy()
    filtered = adata[keep].copy()
    filtered.X = sparse.csr_matrix(filtered.X, dtype=np.float32)
    sc.pp.filter_genes(filtered, min_cells=max(min_cells, 1))
    scanpy_qc_metrics(filtered)
    filtered = filtered[filtered.obs["n_counts"].to_numpy() > 0].copy()
    filtered.layers["counts"] = filtered.X.copy()
    filtered.obs["size_factors"] = filtered.obs["n_counts"] / np.median(filtered.obs["n_counts"])
    sc.pp.normalize_total(filtered)
    sc.pp.log1p(filtered)
    if filtered.n_vars > n_top_genes:
        sc.pp.highly_variable_genes(filtered, flavor="seurat", n_top_genes=n_top_genes)
        filtered = filtered[:, filtered.var["highly_variable"].to_numpy()].copy()
    return filtered


@pytest.mark.parametrize("block_cells", [7, 8192])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_top_genes": 200},
        {"n_top_genes": 1000},  # more than there are genes: all kept
        {"n_top_genes": 150, "min_cells": 60},  # removes genes
        {"n_top_genes": 150, "min_genes": 0, "min_counts": 0, "max_pct_mito": 100.0, "min_cells": 40},
    ],
)
def test_qc_repeats_scanpys_steps_block_by_block(counts, monkeypatch, kwargs, block_cells):
    """Read in blocks of cells, qc gives what scanpy's whole-matrix steps give: the same cells and
    genes, X and the counts bit for bit, and the same metrics and gene statistics. The nearly empty
    cells 6-9 count only a gene no other cell has: with the cell filters off (last case) the gene
    filter removes it, and then those cells, which have no counts left."""
    from scdefr.pp import _blocks

    monkeypatch.setattr(_blocks, "BLOCK_CELLS", block_cells)
    matrix = counts.X.toarray()
    matrix[:, 0] = 0
    matrix[6:10] = 0
    matrix[6:10, 0] = 2
    adata = ad.AnnData(sparse.csr_matrix(matrix), obs=counts.obs.copy(), var=counts.var.copy())
    reference_kwargs = {**kwargs, "max_pct_mito": kwargs.get("max_pct_mito", 20.0) or 100.0}
    reference = scanpy_qc(adata, **reference_kwargs)
    result = pp.qc(adata.copy(), **kwargs)
    if "min_counts" in kwargs:
        assert result.uns["scdefr_qc"]["summary"]["steps"]["no_counts_left"]["cells"] == adata.n_obs - 4
    assert list(result.obs_names) == list(reference.obs_names)
    assert list(result.var_names) == list(reference.var_names)
    for layer in (result.X, result.layers["counts"]):
        assert layer.format == "csr" and layer.dtype == np.float32
    for mine, theirs in ((result.X, reference.X), (result.layers["counts"], reference.layers["counts"])):
        assert (mine != theirs).nnz == 0
    assert list(result.obs.columns) == list(reference.obs.columns)
    for column in ("n_counts", "n_genes", "size_factors"):
        np.testing.assert_array_equal(result.obs[column], reference.obs[column])
    np.testing.assert_allclose(result.obs["pct_counts_mt"], reference.obs["pct_counts_mt"], rtol=1e-6)
    np.testing.assert_array_equal(result.var["n_cells"], reference.var["n_cells"])
    np.testing.assert_array_equal(result.var["mt"], reference.var["mt"])
    if "highly_variable" in reference.var:
        for column in ("means", "dispersions", "dispersions_norm"):
            np.testing.assert_allclose(result.var[column], reference.var[column], rtol=1e-5, atol=1e-6)
    assert result.uns["log1p"] == {"base": None}


def test_qc_carries_the_inputs_other_annotations(counts):
    """Like adata[cells, genes].copy(): obsm, layers and uns of the kept cells and genes come along."""
    adata = counts.copy()
    adata.obsm["X_other"] = np.arange(adata.n_obs * 2, dtype=float).reshape(-1, 2)
    adata.layers["spliced"] = adata.X.copy()
    adata.uns["study"] = {"name": "demo"}
    result = pp.qc(adata, n_top_genes=100)
    cells = adata.obs_names.get_indexer(result.obs_names)
    genes = adata.var_names.get_indexer(result.var_names)
    np.testing.assert_array_equal(result.obsm["X_other"], adata.obsm["X_other"][cells])
    assert (result.layers["spliced"] != adata.layers["spliced"][cells][:, genes]).nnz == 0
    assert result.uns["study"] == {"name": "demo"}


def test_qc_plot(counts, qced, tmp_path):
    adata = counts.copy()
    result = pp.qc(adata, n_top_genes=200)
    figure = pl.qc_plot(adata, result, title="demo", save=tmp_path / "qc.png")
    assert (tmp_path / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "300 -> 290 cells" in figure._suptitle.get_text()
    assert len(figure.axes) == 5  # four panels and a colour bar


def test_qc_preset_paper_drops_only_cells_and_genes_without_counts(counts):
    result = pp.qc(counts.copy(), n_top_genes=200, preset="paper")
    params = result.uns["scdefr_qc"]["params"]
    assert (params["preset"], params["min_genes"], params["max_pct_mito"], params["min_cells"]) == ("paper", 0, 100, 1)
    assert params["n_top_genes"] == 200  # given: wins over the preset's 2,000
    assert result.n_obs == counts.n_obs  # the dying and the nearly empty cells have counts: kept


# -- graph -------------------------------------------------------------------------------------


def test_graph_contract(graphed):
    adjacency = graphed.obsp["scdefr_adjacency"]
    assert sparse.issparse(adjacency) and adjacency.format == "csr" and adjacency.dtype == np.float32
    assert graphed.obsm["X_pca"].shape == (graphed.n_obs, 20)
    assert {"distances", "connectivities"} <= set(graphed.obsp)
    assert "neighbors" in graphed.uns
    info = graphed.uns["scdefr_graph"]
    assert info["params"]["knn_method_used"] == "exact"
    assert info["degree"]["min"] >= 9  # n_neighbors counts the cell itself
    assert info["n_connected_components"] >= 1


def test_adjacency_is_symmetric_normalised_knn(graphed):
    knn = (graphed.obsp["distances"].toarray() > 0).astype(float)
    binary = np.maximum(knn, knn.T)
    with_self = binary + np.eye(graphed.n_obs)
    inv_sqrt = 1 / np.sqrt(with_self.sum(axis=1))
    expected = inv_sqrt[:, None] * with_self * inv_sqrt[None, :]
    np.testing.assert_allclose(graphed.obsp["scdefr_adjacency"].toarray(), expected, rtol=1e-5)
    # the largest eigenvalue of D^-1/2 (A+I) D^-1/2 is 1
    assert np.linalg.eigvalsh(expected).max() == pytest.approx(1.0)


def test_directed_normalisation_is_the_papers_on_a_tiny_graph():
    """The paper's get_adj: kneighbors_graph(k, include_self=True), then D^-1/2 A D^-1/2 with D the row
    sums (so 1/k on each cell's k neighbours) for the fusion and the graph loss; its TAGConv gets
    PyG's gcn_norm of the same edge list: messages from each cell to its neighbours, weighted by
    in-degrees, without added self-loops."""
    rng = np.random.default_rng(0)
    n, k = 30, 5
    knn = kneighbors_graph(rng.normal(size=(n, 4)), k, include_self=True).toarray()
    inv_sqrt = knn.sum(axis=1) ** -0.5
    adjacency = normalized_adjacency(sparse.csr_matrix(knn), "directed")
    np.testing.assert_allclose(adjacency.toarray(), inv_sqrt[:, None] * knn * inv_sqrt[None, :], rtol=1e-6)
    np.testing.assert_allclose(adjacency.data, 1 / k, rtol=1e-6)
    assert (adjacency != adjacency.T).nnz > 0

    rows, cols = np.nonzero(knn)  # the paper's edge_index: row = the cell, col = its neighbour
    in_degree = np.bincount(cols, minlength=n).astype(float)
    weights = in_degree[rows] ** -0.5 * in_degree[cols] ** -0.5
    x = rng.normal(size=(n, 3))
    messages = np.zeros_like(x)
    np.add.at(messages, cols, weights[:, None] * x[rows])  # PyG: x_j from the source, summed at the target
    np.testing.assert_allclose(propagation(adjacency, "directed") @ x, messages, rtol=1e-5)
    assert propagation(adjacency, "symmetric") is adjacency


def test_graph_step_keeps_the_directed_knn_graph(qced, graphed):
    directed = pp.build_graph(qced, n_pcs=20, n_neighbors=10, graph_normalization="directed", seed=0, copy=True)
    adjacency = directed.obsp["scdefr_adjacency"]
    assert (adjacency.getnnz(axis=1) == 10).all() and (adjacency != adjacency.T).nnz > 0
    np.testing.assert_allclose(adjacency.data, 0.1, rtol=1e-6)  # the paper's A / k
    symmetrised = graphed.obsp["scdefr_adjacency"]
    assert ((abs(adjacency) + abs(adjacency.T)) > 0).astype(int).sum() == symmetrised.nnz
    info, reference = directed.uns["scdefr_graph"], graphed.uns["scdefr_graph"]
    assert info["params"]["graph_normalization"] == "directed"
    assert reference["params"]["graph_normalization"] == "symmetric"
    assert (info["n_edges"], info["degree"]) == (reference["n_edges"], reference["degree"])  # the same graph


def test_graph_takes_the_presets_options_unless_given(qced):
    paper = pp.build_graph(qced, n_pcs=20, preset="paper", seed=0, copy=True).uns["scdefr_graph"]["params"]
    assert (paper["preset"], paper["graph_normalization"], paper["knn_method"]) == ("paper", "directed", "exact")
    assert paper["n_pcs"] == 20  # given: wins over the preset's 50
    given = pp.build_graph(qced, n_pcs=20, preset="paper", graph_normalization="symmetric", copy=True)
    assert given.uns["scdefr_graph"]["params"]["graph_normalization"] == "symmetric"
    with pytest.raises(ScdefrError, match=r"preset \(--preset\) must be one of none, paper"):
        pp.build_graph(qced, preset="papers", copy=True)


def test_neighbours_are_mostly_the_same_type(graphed):
    """Labels checked only here, to show the graph carries the planted structure."""
    rows, cols = graphed.obsp["scdefr_adjacency"].nonzero()
    labels = graphed.obs["cell_type"].to_numpy()
    assert np.mean(labels[rows] == labels[cols]) > 0.95


def test_duplicate_cells_keep_their_edges():
    """A zero distance (identical cells) is stored explicitly and still counts as an edge."""
    distances = sparse.csr_matrix(
        (np.array([0.0, 0.0, 1.0]), np.array([1, 0, 0]), np.array([0, 1, 2, 3])), shape=(3, 3)
    )
    adjacency = normalized_adjacency(pp.knn_binary(distances, n_neighbors=2)).toarray()
    assert adjacency[0, 1] > 0 and adjacency[1, 0] > 0 and adjacency[2, 0] > 0
    np.testing.assert_allclose(adjacency, adjacency.T)


def test_knn_binary_keeps_the_nearest_other_cells():
    """pynndescent's distances hold the cell itself and one neighbour too many; the binary graph drops both."""
    rng = np.random.default_rng(0)
    n, k = 6, 3
    rows = np.repeat(np.arange(n), k + 1)
    cols = np.concatenate([[i, *rng.choice([j for j in range(n) if j != i], k, replace=False)] for i in range(n)])
    values = np.concatenate([[0.0, 3.0, 1.0, 2.0] for _ in range(n)])  # self, farthest, nearest, second
    binary = pp.knn_binary(sparse.csr_matrix((values, (rows, cols)), shape=(n, n)), n_neighbors=k)
    assert (binary.getnnz(axis=1) == k - 1).all() and binary.diagonal().sum() == 0
    for i in range(n):
        assert set(binary[i].indices) == {cols[i * (k + 1) + 2], cols[i * (k + 1) + 3]}


def test_graph_is_reproducible(qced):
    a, b = qced.copy(), qced.copy()
    pp.build_graph(a, n_pcs=15, seed=3)
    pp.build_graph(b, n_pcs=15, seed=3)
    np.testing.assert_array_equal(a.obsm["X_pca"], b.obsm["X_pca"])
    assert (a.obsp["scdefr_adjacency"] != b.obsp["scdefr_adjacency"]).nnz == 0


def test_n_pcs_capped_for_tiny_inputs(qced):
    tiny = qced[:30, :12].copy()
    pp.build_graph(tiny, n_pcs=50, n_neighbors=5)
    assert tiny.obsm["X_pca"].shape[1] == 11
    assert tiny.uns["scdefr_graph"]["params"]["n_pcs"] == 11


def test_fewer_cells_than_neighbours(qced):
    with pytest.raises(ScdefrError, match=r"only 8 cells, fewer than n_neighbors \(--n-neighbors\) 10"):
        pp.build_graph(qced[:8].copy(), n_neighbors=10)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"knn_method": "fast"}, "--knn-method"), ({"n_neighbors": 1}, "--n-neighbors"), ({"n_pcs": 0}, "--n-pcs")],
)
def test_impossible_graph_parameters(qced, kwargs, message):
    with pytest.raises(ScdefrError, match=message):
        pp.build_graph(qced.copy(), **kwargs)


def test_graph_refuses_nan(qced):
    adata = qced[:50].copy()
    adata.X.data[0] = np.nan
    with pytest.raises(ScdefrError, match="NaN"):
        pp.build_graph(adata)


def test_search_is_exact_up_to_the_limit_and_approximate_above():
    """Up to and including the limit, so the export's UMAP fitted on that many cells searches exactly."""
    assert pp.auto_knn_method(pp.EXACT_KNN_MAX_CELLS) == "exact"
    assert pp.auto_knn_method(pp.EXACT_KNN_MAX_CELLS + 1) == "approx"


def test_covariance_pca_matches_an_exact_svd(qced):
    """The large-input PCA: the same components, scores and variances as sklearn's full SVD, with
    each component signed so its largest loading is positive (so the result does not depend on a seed)."""
    from sklearn.decomposition import PCA

    adata = qced.copy()
    pp.covariance_pca(adata, 10)
    dense = adata.X.toarray()
    reference = PCA(10, svd_solver="full").fit(dense)
    signs = np.sign(reference.components_[np.arange(10), np.abs(reference.components_).argmax(axis=1)])
    np.testing.assert_allclose(adata.varm["PCs"].T, reference.components_ * signs[:, None], atol=1e-4)
    np.testing.assert_allclose(adata.obsm["X_pca"], reference.transform(dense) * signs, atol=1e-3)
    np.testing.assert_allclose(adata.uns["pca"]["variance"], reference.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(adata.uns["pca"]["variance_ratio"], reference.explained_variance_ratio_, rtol=1e-4)
    assert adata.obsm["X_pca"].dtype == np.float32


def test_graph_uses_the_covariance_pca_above_its_threshold(qced, monkeypatch):
    """Inputs above SCANPY_PCA_MAX_CELLS get the covariance PCA; smaller ones keep scanpy's,
    and both give the same neighbours on well separated types."""
    from scdefr.pp import _graph

    small = qced.copy()
    pp.build_graph(small, n_pcs=15, seed=0)
    monkeypatch.setattr(_graph, "SCANPY_PCA_MAX_CELLS", qced.n_obs - 1)
    large = qced.copy()
    pp.build_graph(large, n_pcs=15, seed=0)
    assert large.uns["pca"]["params"]["solver"] == "covariance" and "solver" not in small.uns["pca"]["params"]
    correlation = [abs(np.corrcoef(small.obsm["X_pca"][:, i], large.obsm["X_pca"][:, i])[0, 1]) for i in range(3)]
    assert min(correlation) > 0.999
    same = small.obsp["scdefr_adjacency"].astype(bool).multiply(large.obsp["scdefr_adjacency"].astype(bool)).nnz
    assert same / small.obsp["scdefr_adjacency"].nnz > 0.95


@pytest.mark.slow
def test_approximate_graph_above_4096_cells():
    """pynndescent path (scanpy 1.11 needs pynndescent<0.7 here): seeded, reproducible, close to exact."""
    adata = pp.qc(make_counts(5000, 120, seed=1), n_top_genes=100)
    exact = adata.copy()
    pp.build_graph(adata, n_pcs=20, knn_method="approx", seed=0)
    assert adata.uns["scdefr_graph"]["params"]["knn_method_used"] == "approx"
    again = adata.copy()
    pp.build_graph(again, n_pcs=20, knn_method="approx", seed=0)
    assert (again.obsp["scdefr_adjacency"] != adata.obsp["scdefr_adjacency"]).nnz == 0
    pp.build_graph(exact, n_pcs=20, knn_method="exact", seed=0)
    approx_edges = pp.knn_binary(adata.obsp["distances"], 10)
    exact_edges = pp.knn_binary(exact.obsp["distances"], 10)
    recall = approx_edges.multiply(exact_edges).nnz / exact_edges.nnz
    assert recall > 0.9
    assert adata.uns["scdefr_graph"]["degree"]["min"] >= 9
    knn = pp.knn_binary(adata.obsp["distances"], 10)
    assert (knn.getnnz(axis=1) == 9).all()  # the same 9 other cells per cell as the exact search


# -- a real dataset ----------------------------------------------------------------------------

DATASETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


@pytest.mark.skipif(not (DATASETS / "mouse_bladder_top2000.h5ad").exists(), reason="shared datasets absent")
def test_default_qc_keeps_nearly_all_cells_of_a_published_dataset():
    from scdefr import io

    adata = io.read_counts(DATASETS / "mouse_bladder_top2000.h5ad")
    result = pp.qc(adata)
    assert result.n_obs >= 0.99 * adata.n_obs
    genes_seen_in_3_cells = result.uns["scdefr_qc"]["summary"]["steps"]["min_cells"]["genes"]
    assert result.n_vars == min(2000, genes_seen_in_3_cells)
    pp.build_graph(result, seed=0)
    assert result.uns["scdefr_graph"]["degree"]["min"] >= 9


@pytest.mark.skipif(not (DATASETS / "paul15.h5ad").exists(), reason="shared datasets absent")
def test_highly_variable_genes_of_a_published_dataset_are_scanpys():
    import scanpy as sc

    from scdefr import io
    from scdefr.pp import _qc

    adata = io.read_counts(DATASETS / "paul15.h5ad")
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    reference = scanpy_seurat_genes(adata, 2000)
    selected = _qc._highly_variable(pp.seurat_dispersions(adata.X), 2000)
    np.testing.assert_array_equal(selected, reference.var["highly_variable"])


def test_no_variable_gene_is_a_user_error():
    """Every gene constant across the kept cells: no dispersion to rank, a one-line error."""
    flat = ad.AnnData(
        sparse.csr_matrix(np.ones((60, 40), dtype=np.float32)), var=pd.DataFrame(index=[f"Gene{i}" for i in range(40)])
    )
    with pytest.raises(ScdefrError, match="no gene varies across the kept cells"):
        pp.qc(flat, min_genes=1, n_top_genes=10)
