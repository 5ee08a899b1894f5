"""The user-facing model and tl.scdefr: correctness, label blindness, determinism, checkpoints, options."""

import dataclasses

import anndata as ad
import numpy as np
import pytest
import torch
from builders import ACCURATE, QUICK, make_graph_adata
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import kneighbors_graph

from scdefr import checkpoint, tl
from scdefr.adjacency import normalized_adjacency
from scdefr.errors import ScdefrError
from scdefr.model import SCDEFR
from scdefr.options import PRESETS, ClusterOptions
from scdefr.plan import TrainingPlan


def test_recovers_planted_types_and_writes_contract(tmp_path):
    adata = make_graph_adata()
    tl.scdefr(adata, 4, **ACCURATE)
    assert adjusted_rand_score(adata.obs["cell_type"], adata.obs["scdefr_cluster"]) > 0.9
    assert list(adata.obs["scdefr_cluster"].cat.categories) == ["0", "1", "2", "3"]
    sizes = adata.obs["scdefr_cluster"].value_counts().reindex(["0", "1", "2", "3"]).to_numpy()
    assert (np.diff(sizes) <= 0).all()  # numbered by size, largest first
    assert adata.obsm["X_scdefr"].shape == (adata.n_obs, 8)
    soft = adata.obsm["scdefr_soft"]
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    # default read-out: a cell's row is the share of its graph neighbourhood (itself included) per cluster
    codes = adata.obs["scdefr_cluster"].cat.codes.to_numpy()
    assert (soft[np.arange(adata.n_obs), codes] > 0).all() and (soft.argmax(axis=1) == codes).mean() > 0.9
    summary = adata.uns["scdefr"]
    assert summary["n_clusters"] == 4 and summary["n_clusters_choice"]["method"] == "given"
    assert len(summary["history"]["pretrain"]["loss"]) == 120 and len(summary["history"]["joint"]["kl"]) == 20
    assert np.all(np.isfinite(summary["history"]["joint"]["loss"]))
    assert summary["history"]["pretrain"]["zinb"][-1] < summary["history"]["pretrain"]["zinb"][0]
    adata.write_h5ad(tmp_path / "trained.h5ad")  # uns must be h5ad-writable
    back = ad.read_h5ad(tmp_path / "trained.h5ad")
    assert back.uns["scdefr"]["params"]["network"]["hidden_dims"].tolist() == [32, 16, 8]


def test_estimate_n_clusters_on_separated_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(5, 6))
    embedding = (centres[np.repeat(np.arange(5), 60)] + rng.normal(size=(300, 6))).astype(np.float32)
    assert tl.estimate_n_clusters(embedding, method="silhouette", seed=0)[0] == 5
    k, info = tl.estimate_n_clusters(embedding, method="leiden", resolution=0.2, seed=0)
    assert k == 5 and info["leiden_communities"] >= 5


def test_estimate_n_clusters_samples_cells_above_its_limit(monkeypatch):
    """Above ESTIMATE_MAX_CELLS, K comes from a seeded random sample of that many cells (the exact
    kNN search is quadratic: over 7 minutes at 1M cells); the sample still shows every group."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(5, 6))
    embedding = (centres[np.repeat(np.arange(5), 120)] + rng.normal(size=(600, 6))).astype(np.float32)
    assert tl.estimate_n_clusters(embedding, resolution=0.2, seed=0)[1]["n_cells_used"] == 600
    from scdefr import clustering

    monkeypatch.setattr(clustering, "ESTIMATE_MAX_CELLS", 250)
    for method in ("leiden", "silhouette"):
        for seed in (0, 1):  # two samples
            k, info = tl.estimate_n_clusters(embedding, method=method, resolution=0.2, seed=seed)
            assert k == 5 and info["n_cells_used"] == 250
    leiden = tl.estimate_n_clusters(embedding, resolution=0.2, seed=0)[1]
    assert tl.estimate_n_clusters(embedding, resolution=0.2, seed=0)[1] == leiden  # the same sample again


@pytest.mark.parametrize("method", ["leiden", "silhouette"])
def test_auto_n_clusters_without_labels(method):
    """Both ways of estimating K find the 4 planted types; Leiden at the default resolution is the default."""
    adata = make_graph_adata()
    del adata.obs["cell_type"]
    options = {} if method == "leiden" else {"n_clusters_method": "silhouette"}
    tl.scdefr(adata, "auto", **ACCURATE, **options)
    choice = adata.uns["scdefr"]["n_clusters_choice"]
    assert choice["method"] == method and choice["n_clusters"] == 4
    if method == "leiden":
        assert choice["resolution"] == ClusterOptions.leiden_resolution
    else:
        assert len(choice["silhouette_scores"]) == len(choice["candidates"])


def test_output_independent_of_labels_and_deterministic():
    """No label, the true labels, or shuffled labels: identical embedding and clusters (same seed)."""
    results = []
    for labels in ("none", "true", "shuffled"):
        adata = make_graph_adata()
        if labels == "none":
            del adata.obs["cell_type"]
        elif labels == "shuffled":
            adata.obs["cell_type"] = np.random.default_rng(5).permutation(adata.obs["cell_type"].to_numpy())
        tl.scdefr(adata, 4, seed=3, **QUICK)
        results.append((adata.obsm["X_scdefr"], adata.obs["scdefr_cluster"].to_numpy()))
    for embedding, clusters in results[1:]:
        np.testing.assert_array_equal(embedding, results[0][0])
        np.testing.assert_array_equal(clusters, results[0][1])


@pytest.mark.parametrize("batch_size", [0, 60])
def test_checkpoint_loads_weights_only_and_resume_continues_exactly(tmp_path, monkeypatch, batch_size):
    options = {**QUICK, "batch_size": batch_size}
    reference = make_graph_adata()
    tl.scdefr(reference, 4, **options)

    class Interrupted(Exception):
        pass

    original = TrainingPlan._after_epoch

    def stop_in_joint_phase(self, phase, epoch, n_epochs, started):
        original(self, phase, epoch, n_epochs, started)
        if phase == "joint" and epoch == 4:
            raise Interrupted

    path = tmp_path / "run.model.pt"
    interrupted = make_graph_adata()
    monkeypatch.setattr(TrainingPlan, "_after_epoch", stop_in_joint_phase)
    with pytest.raises(Interrupted):
        tl.scdefr(interrupted, 4, checkpoint_path=path, checkpoint_every=2, **options)
    monkeypatch.undo()

    saved = torch.load(path, weights_only=True)
    assert saved["phase"] == "joint" and saved["epoch"] == 4
    assert len(saved["history"]["joint"]["loss"]) == 4 and saved["optimizer"]["state"]
    # the embedding the centres were placed on, which the merge read-out also clusters
    assert saved["pretrained_embedding"].shape == reference.obsm["X_scdefr"].shape
    if batch_size:  # the next epoch's targets use the soft cluster sizes of all cells, saved with the run
        assert sum(saved["cluster_frequencies"]["q"]) == pytest.approx(reference.n_obs, rel=1e-4)

    resumed = make_graph_adata()
    tl.scdefr(resumed, checkpoint_path=path, resume=path)
    np.testing.assert_array_equal(resumed.obsm["X_scdefr"], reference.obsm["X_scdefr"])
    np.testing.assert_array_equal(resumed.obs["scdefr_cluster"], reference.obs["scdefr_cluster"])
    assert checkpoint.load(path)["phase"] == "done"

    # a finished model loads and predicts the same clusters; other cells are refused
    model = SCDEFR.load(path, make_graph_adata())
    _, soft, clusters = model.predict()
    np.testing.assert_array_equal(np.asarray(clusters), reference.obs["scdefr_cluster"].to_numpy())
    with pytest.raises(ScdefrError, match="other cells"):
        SCDEFR.load(path, make_graph_adata(n_cells=200))


def test_smoothing_averages_each_cell_over_its_neighbourhood():
    """One step: each row becomes the mean over the cell and its graph neighbours (weights ignored);
    a cell whose own Q points away from all its neighbours joins them."""
    import scipy.sparse as sp

    # cells 0-3 form a clique of cluster 0, cells 4-5 a pair of cluster 1; cell 3 leans to cluster 1
    soft = np.array([[0.9, 0.1]] * 3 + [[0.4, 0.6]] + [[0.2, 0.8]] * 2, dtype=np.float32)
    edges = [(i, j) for i in range(4) for j in range(4) if i != j] + [(4, 5), (5, 4)]
    adjacency = sp.csr_matrix((np.full(len(edges), 0.3), tuple(zip(*edges, strict=False))), shape=(6, 6))
    once = tl.smooth_assignments(soft, adjacency, 1)
    np.testing.assert_allclose(once[3], soft[:4].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(once[4], soft[4:].mean(axis=0), rtol=1e-6)
    assert once.argmax(axis=1).tolist() == [0, 0, 0, 0, 1, 1] and soft[3].argmax() == 1
    twice = tl.smooth_assignments(soft, adjacency, 2)
    np.testing.assert_allclose(twice, tl.smooth_assignments(once, adjacency, 1), rtol=1e-6)
    np.testing.assert_allclose(twice.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(tl.smooth_assignments(soft, adjacency, 0), soft)


def test_clusters_are_the_argmax_of_q_smoothed_over_the_graph(tmp_path, monkeypatch, caplog):
    """Smoothing changes only the read-out: the same run with 0 steps gives the same embedding, and
    its Q smoothed by tl.smooth_assignments is what the default run stores."""
    default, raw = make_graph_adata(), make_graph_adata()
    steps = 4
    tl.scdefr(default, 4, seed=2, readout="centres", smoothing_steps=steps, **QUICK)
    tl.scdefr(raw, 4, seed=2, readout="centres", smoothing_steps=0, **QUICK)
    np.testing.assert_array_equal(default.obsm["X_scdefr"], raw.obsm["X_scdefr"])
    assert default.uns["scdefr"]["params"]["clusters"]["smoothing_steps"] == steps
    expected = tl.smooth_assignments(raw.obsm["scdefr_soft"], raw.obsp["scdefr_adjacency"], steps)
    # the read-out numbers clusters by size: the same columns, matched by the cells they hold
    order = (default.obsm["scdefr_soft"].T @ expected).argmax(axis=1)
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(default.obsm["scdefr_soft"], expected[:, order], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(
        raw.obsm["scdefr_soft"].argmax(axis=1).astype(str), raw.obs["scdefr_cluster"].astype(str)
    )

    # a cluster that no cell's argmax picks is no category (its column stays, last), and the log says so
    model = SCDEFR(make_graph_adata(), 4, seed=2, readout="centres", **QUICK).fit()
    infer = model.module.infer

    def without_cluster_3(*args, **kwargs):
        out = infer(*args, **kwargs)
        out.q[:, 3] = 0.0
        return out

    monkeypatch.setattr(model.module, "infer", without_cluster_3)
    with caplog.at_level("WARNING", logger="scdefr.readout"):
        _, soft, clusters = model.predict()
    assert list(clusters.categories) == ["0", "1", "2"] and soft.shape[1] == 4 and not soft[:, 3].any()
    assert "1 of the 4 clusters hold no cell" in caplog.text


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.obsp.pop("scdefr_adjacency"), "scdefr_adjacency"),
        (lambda a: a.layers.pop("counts"), "counts"),
        (lambda a: a.obs.pop("size_factors"), "size_factors"),
        (lambda a: a.X.data.__setitem__(0, np.nan), "NaN"),
    ],
)
def test_bad_input_is_one_line_error(change, message):
    adata = make_graph_adata(n_cells=40)
    change(adata)
    with pytest.raises(ScdefrError, match=message):
        SCDEFR(adata, 3, **QUICK)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_clusters": 41}, "exceeds the number of cells"),
        ({"n_clusters": 0}, r"n_clusters \(--n-clusters\) must be >= 1"),
        ({"n_clusters": "many"}, r"n_clusters \(--n-clusters\) must be an integer or 'auto'"),
        ({"pretrain_epochs": -2}, r"pretrain_epochs \(--pretrain-epochs\) must be >= 0"),
        ({"sigma": 1.5}, r"sigma \(--sigma\) must be <= 1"),
        ({"lr": 0.0}, r"lr \(--lr\) must be > 0"),
        ({"dropout": 1.0}, r"dropout \(--dropout\) must be < 1"),
        ({"zinb_form": "dense"}, "zinb_form .* must be one of counts, paper"),
        ({"graph_loss": "dense"}, "graph_loss"),
        ({"input_scaling": "zscore"}, "input_scaling"),
        ({"input_noise": -1.0}, "input_noise"),
        ({"cluster_balance": -1.0}, "cluster_balance"),
        ({"cluster_balance": float("nan")}, "cluster_balance .* must be a number"),
        ({"smoothing_steps": -1}, "smoothing_steps"),
        ({"smoothing_steps": 1.5}, "smoothing_steps .* must be an integer"),
        ({"hidden_dims": (8,)}, "hidden_dims"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_impossible_parameters_are_refused(options, message):
    options = {"n_clusters": 3, **QUICK, **options}
    with pytest.raises(ScdefrError, match=message):
        SCDEFR(make_graph_adata(n_cells=40), **options)


def test_short_default_schedule_fills_every_cluster_asked_for():
    """Regression: with the default network on unscaled X, 5 + 5 epochs put every cell in one of the
    4 clusters asked for (training began with an embedding without structure and diverging graph
    logits). Scaled input gives the planted types from the start."""
    adata = make_graph_adata(n_cells=200)
    tl.scdefr(adata, 4, pretrain_epochs=5, epochs=5, kmeans_n_init=2)
    sizes = adata.obs["scdefr_cluster"].value_counts()
    assert (sizes > 0).sum() == 4
    assert adjusted_rand_score(adata.obs["cell_type"], adata.obs["scdefr_cluster"]) > 0.9


def test_kmeans_readout_is_kmeans_on_the_final_embedding():
    """readout='kmeans' (the paper's embedding read-out) without smoothing: the clusters are those of
    KMeans on z, and the soft assignments are the Student's t kernel to its centres."""
    model = SCDEFR(make_graph_adata(n_cells=120), 3, readout="kmeans", smoothing_steps=0, **QUICK).fit()
    z, soft, clusters = model.predict()
    labels = KMeans(3, n_init=QUICK["kmeans_n_init"], random_state=0).fit_predict(z)
    assert adjusted_rand_score(labels, clusters) == 1.0
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert "KMeans" in model.summary()["cluster_assignment"]


def directed_graph_adata(n_cells: int) -> ad.AnnData:
    """make_graph_adata's cells on the paper's directed kNN graph, as 'scdefr graph --preset paper' records it."""
    adata = make_graph_adata(n_cells=n_cells)
    knn = kneighbors_graph(adata.X, 9, include_self=False)
    adata.obsp["scdefr_adjacency"] = normalized_adjacency(knn, "directed")
    adata.uns["scdefr_graph"] = {"params": {"graph_normalization": "directed", "preset": "paper"}}
    return adata


def test_preset_gives_the_defaults_and_explicit_options_win():
    adata = make_graph_adata(n_cells=40)
    model = SCDEFR(adata, 3, preset="paper", epochs=10, hidden_dims=(16, 8, 4))
    assert (model.training.epochs, model.network.hidden_dims) == (10, (16, 8, 4))
    for group in (model.clusters, model.network, model.training):
        for name, value in group.to_dict().items():
            if name in PRESETS["paper"] and name not in ("epochs", "hidden_dims"):
                assert value == PRESETS["paper"][name], name
    plain = SCDEFR(adata, 3)
    assert (plain.preset, plain.training.joint_mode, plain.network.decoder_layers) == ("none", "train", "mirror")


def test_paper_preset_trains_records_itself_and_reloads(tmp_path, caplog):
    adata = directed_graph_adata(60)
    short = {"pretrain_epochs": 3, "epochs": 2, "hidden_dims": (16, 8, 4), "kmeans_n_init": 2}
    tl.scdefr(adata, 3, preset="paper", checkpoint_path=tmp_path / "m.pt", **short)
    params = adata.uns["scdefr"]["params"]
    assert params["preset"] == "paper"
    assert params["training"]["joint_optimizer"] == "fresh" and params["training"]["lr"] == 1e-8
    assert params["network"]["decoder_layers"] == "gene_wide" and params["clusters"]["readout"] == "kmeans"
    assert all(np.all(np.isfinite(values)) for values in adata.uns["scdefr"]["history"]["joint"].values())
    assert "preset paper, but the input graph" not in caplog.text
    loaded = SCDEFR.load(tmp_path / "m.pt", adata)
    assert loaded.preset == "paper" and loaded.options() == SCDEFR(adata, 3, preset="paper", **short).options()
    symmetric = make_graph_adata(n_cells=60)
    symmetric.uns["scdefr_graph"] = {"params": {"graph_normalization": "symmetric"}}
    SCDEFR(symmetric, 3, preset="paper")
    assert "graph_normalization symmetric (the preset: directed)" in caplog.text


def test_paper_graph_loss_remains_available():
    adata = make_graph_adata(n_cells=40)
    tl.scdefr(adata, 3, graph_loss="paper", **QUICK)
    summary = adata.uns["scdefr"]
    assert summary["params"]["training"]["graph_loss"] == "paper"
    reconstruction = summary["history"]["pretrain"]["reconstruction"]
    # the paper's term sums squared errors over about k edges per cell: far above the sampled BCE's ~1.4 at start
    assert np.all(np.isfinite(reconstruction)) and reconstruction[0] > 2.0


def test_paper_zinb_form_trains_on_log_normalised_x():
    adata = make_graph_adata()
    del adata.layers["counts"], adata.obs["size_factors"]  # the paper's form needs neither
    tl.scdefr(adata, 4, zinb_form="paper", **QUICK)
    assert adata.uns["scdefr"]["params"]["network"]["zinb_form"] == "paper"
    assert np.all(np.isfinite(adata.uns["scdefr"]["history"]["joint"]["zinb"]))


@pytest.mark.slow
def test_end_to_end_on_simulated_counts():
    """scdefr.simulate -> pp.qc -> pp.build_graph -> tl.scdefr on planted types."""
    from scdefr import pp
    from scdefr.simulate import simulate_counts

    counts = simulate_counts(n_cells=400, n_genes=600, n_clusters=4, seed=0, marker_log_fold_change=1.6)
    adata = pp.qc(counts, n_top_genes=300)
    pp.build_graph(adata, seed=0)
    tl.scdefr(adata, 4, seed=0, **{**ACCURATE, "hidden_dims": (64, 32, 12)})
    assert adjusted_rand_score(adata.obs["cell_type"], adata.obs["scdefr_cluster"]) > 0.9


def test_merge_read_out_keeps_a_large_type_whole_and_a_small_one_apart():
    """Pieces of one large type share many edges, two types few: merging by e_ab / sqrt(d_a d_b)
    rebuilds a type KMeans cut in three and keeps a type of 4% of the cells on its own."""
    import scipy.sparse as sp

    from scdefr.readout import merge_clusters, split_and_merge

    rng = np.random.default_rng(0)
    sizes = (480, 20)  # 96% and 4% of the cells
    types = np.repeat([0, 1], sizes)
    points = np.concatenate([rng.normal(0, 1.0, (sizes[0], 2)), rng.normal(6, 0.3, (sizes[1], 2))])
    from sklearn.neighbors import kneighbors_graph

    knn = kneighbors_graph(points, 8)
    adjacency = knn.maximum(knn.T)
    big_in_three = np.where(types == 1, 3, np.digitize(points[:, 0], [-0.5, 0.5]))
    merged = merge_clusters(big_in_three, adjacency, 2)
    assert adjusted_rand_score(types, merged) == 1.0
    assert adjusted_rand_score(types, split_and_merge(points, sp.csr_matrix(adjacency), 2, factor=5, seed=0)) == 1.0


def test_modularity_of_a_partition_matches_igraph():
    import igraph
    from sklearn.neighbors import kneighbors_graph

    from scdefr.readout import graph_modularity

    points = np.random.default_rng(1).normal(size=(60, 3))
    knn = kneighbors_graph(points, 5, mode="distance")
    adjacency = knn.maximum(knn.T).tocoo()
    labels = (points[:, 0] > 0).astype(int) + 2 * (points[:, 1] > 0)
    upper = adjacency.row < adjacency.col
    graph = igraph.Graph(
        n=60,
        edges=list(zip(adjacency.row[upper], adjacency.col[upper], strict=True)),
        edge_attrs={"w": adjacency.data[upper]},
    )
    assert graph_modularity(labels, adjacency) == pytest.approx(graph.modularity(labels.tolist(), weights="w"))


def test_merge_restarts_keep_the_most_modular_run():
    """Restarts only add candidates: the first run is the single run, and the kept one is at least as
    modular as every run."""
    import scipy.sparse as sp
    from sklearn.cluster import KMeans
    from sklearn.neighbors import kneighbors_graph

    from scdefr.readout import graph_modularity, merge_clusters, split_and_merge

    rng = np.random.default_rng(2)
    points = np.concatenate([rng.normal(centre, 1.0, (80, 4)) for centre in (0, 2.5, 5)])
    knn = kneighbors_graph(points, 8)
    adjacency = sp.csr_matrix(knn.maximum(knn.T))
    single = split_and_merge(points, adjacency, 3, factor=8, seed=0)
    kept = split_and_merge(points, adjacency, 3, factor=8, seed=0, restarts=6)
    seeds = [0, *np.random.default_rng(0).integers(0, 2**31 - 1, 5).tolist()]
    runs = [merge_clusters(KMeans(24, n_init=5, random_state=s).fit_predict(points), adjacency, 3) for s in seeds]
    np.testing.assert_array_equal(single, runs[0])
    assert graph_modularity(kept, adjacency) == pytest.approx(max(graph_modularity(run, adjacency) for run in runs))
    assert len({tuple(run) for run in runs}) > 1  # the seeds do give different runs to choose from
    with pytest.raises(ScdefrError, match="restarts must be at least 1"):
        split_and_merge(points, adjacency, 3, factor=8, seed=0, restarts=0)


def test_the_merge_read_out_keeps_the_more_modular_of_the_final_and_the_pretrained_clusters(monkeypatch, caplog):
    """merge_embeddings='both' keeps the partition, of the final or the pre-trained embedding, of highest
    modularity on the cell graph; 'final' reads the final embedding alone. Here the final embedding is
    noise and the pre-trained one holds the planted types."""
    adata = make_graph_adata()
    truth = adata.obs["cell_type"].cat.codes.to_numpy()
    model = SCDEFR(adata, 4, seed=0, **QUICK).fit()
    rng = np.random.default_rng(0)
    model.state.pretrained_embedding = (np.eye(4)[truth] + rng.normal(0, 0.05, (adata.n_obs, 4))).astype(np.float32)
    infer = model.module.infer

    def noise_for_z(*args, **kwargs):
        out = infer(*args, **kwargs)
        out.z = torch.as_tensor(rng.normal(size=tuple(out.z.shape)), dtype=out.z.dtype)
        return out

    monkeypatch.setattr(model.module, "infer", noise_for_z)
    with caplog.at_level("INFO", logger="scdefr.readout"):
        _, _, kept = model.predict()
    assert adjusted_rand_score(truth, np.asarray(kept)) > 0.95
    assert "the pre-trained embedding's clusters kept" in caplog.text
    choice = model.summary()["merge_choice"]
    assert choice["embedding"] == "pre-trained" and choice["modularity"]["pre-trained"] > choice["modularity"]["final"]
    model.clusters = dataclasses.replace(model.clusters, merge_embeddings="final")
    _, _, final = model.predict()
    assert adjusted_rand_score(truth, np.asarray(final)) < 0.2


def test_merge_read_out_of_the_model():
    adata = make_graph_adata()
    tl.scdefr(adata, 4, readout="merge", **ACCURATE)
    assert adjusted_rand_score(adata.obs["cell_type"], adata.obs["scdefr_cluster"]) > 0.9
    assert "merged over the cell graph" in adata.uns["scdefr"]["cluster_assignment"]
    np.testing.assert_allclose(adata.obsm["scdefr_soft"].sum(axis=1), 1.0, rtol=1e-5)


def test_merge_read_out_without_smoothing_keeps_the_merged_clusters_and_scores_their_neighbourhoods():
    """No averaging: every cell keeps its merged cluster (all K filled), and its soft row is the share of
    its graph neighbours in each cluster, so cells at a border have less than 1 for their own cluster."""
    from scdefr.adjacency import smooth
    from scdefr.export import clusters_table

    adata = make_graph_adata()
    tl.scdefr(adata, 4, readout="merge", smoothing_steps=0, **ACCURATE)
    clusters = adata.obs["scdefr_cluster"]
    assert len(clusters.cat.categories) == 4 and clusters.value_counts().min() > 0
    one_hot = np.eye(4)[clusters.cat.codes.to_numpy()]
    np.testing.assert_allclose(adata.obsm["scdefr_soft"], smooth(one_hot, adata.obsp["scdefr_adjacency"], 1), atol=1e-6)
    own = clusters_table(adata)["probability"].to_numpy()
    np.testing.assert_allclose(own, adata.obsm["scdefr_soft"][np.arange(adata.n_obs), clusters.cat.codes], atol=1e-6)
    assert 0.5 < own.mean() < 1.0 and own.max() == pytest.approx(1.0)
