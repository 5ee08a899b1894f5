"""Training plan, user model and tl.scdefr: correctness, label blindness, determinism, checkpoints."""

import copy

import anndata as ad
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from builders import ACCURATE, QUICK, make_graph_adata
from scdefr import config, tl
from scdefr.config import JOINT_REFERENCE_CELLS, MIN_AUTO_EPOCHS, PRETRAIN_REFERENCE_CELLS, resolve_epochs
from scdefr.errors import ScdefrError
from scdefr.model import SCDEFR
from scdefr.nn import SCDEFRModule
from scdefr.training import CellGraph, TrainingConfig, TrainingPlan, load_checkpoint, make_batch, partition_cells


def test_recovers_planted_types_and_writes_contract(tmp_path):
    adata = make_graph_adata()
    tl.scdefr(adata, 4, **ACCURATE)
    assert adjusted_rand_score(adata.obs["cell_type"], adata.obs["scdefr_cluster"]) > 0.9
    assert list(adata.obs["scdefr_cluster"].cat.categories) == ["0", "1", "2", "3"]
    assert adata.obsm["X_scdefr"].shape == (adata.n_obs, 8)
    soft = adata.obsm["scdefr_soft"]
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(soft.argmax(axis=1).astype(str), adata.obs["scdefr_cluster"].astype(str))
    summary = adata.uns["scdefr"]
    assert summary["n_clusters"] == 4 and summary["n_clusters_choice"]["method"] == "given"
    assert len(summary["history"]["pretrain"]["loss"]) == 120 and len(summary["history"]["joint"]["kl"]) == 20
    assert np.all(np.isfinite(summary["history"]["joint"]["loss"]))
    assert summary["history"]["pretrain"]["zinb"][-1] < summary["history"]["pretrain"]["zinb"][0]
    adata.write_h5ad(tmp_path / "trained.h5ad")  # uns must be h5ad-writable
    back = ad.read_h5ad(tmp_path / "trained.h5ad")
    assert back.uns["scdefr"]["params"]["model"]["hidden_dims"].tolist() == [32, 16, 8]

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
    monkeypatch.setattr(tl, "ESTIMATE_MAX_CELLS", 250)
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
        assert choice["resolution"] == 0.1
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
    if batch_size:  # the next epoch's targets use the soft cluster sizes of all cells, saved with the run
        assert sum(saved["cluster_frequencies"]["q"]) == pytest.approx(reference.n_obs, rel=1e-4)

    resumed = make_graph_adata()
    tl.scdefr(resumed, checkpoint_path=path, resume=path)
    np.testing.assert_array_equal(resumed.obsm["X_scdefr"], reference.obsm["X_scdefr"])
    np.testing.assert_array_equal(resumed.obs["scdefr_cluster"], reference.obs["scdefr_cluster"])
    assert load_checkpoint(path)["phase"] == "done"

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
    adjacency = sp.csr_matrix((np.full(len(edges), 0.3), tuple(zip(*edges))), shape=(6, 6))
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
    tl.scdefr(default, 4, seed=2, **QUICK)
    tl.scdefr(raw, 4, seed=2, smoothing_steps=0, **QUICK)
    np.testing.assert_array_equal(default.obsm["X_scdefr"], raw.obsm["X_scdefr"])
    steps = config.DEFAULT_SMOOTHING_STEPS
    assert steps > 0 and default.uns["scdefr"]["params"]["smoothing_steps"] == steps
    expected = tl.smooth_assignments(raw.obsm["scdefr_soft"], raw.obsp["scdefr_adjacency"], steps)
    np.testing.assert_allclose(default.obsm["scdefr_soft"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(raw.obsm["scdefr_soft"].argmax(axis=1).astype(str), raw.obs["scdefr_cluster"].astype(str))

    # a cluster that no cell's argmax picks is kept as an empty category, and the log says so
    model = SCDEFR(make_graph_adata(), 4, seed=2, **QUICK).fit()
    embedding, q = model._training_plan().embed()
    q[:, 3] = 0.0
    monkeypatch.setattr(TrainingPlan, "embed", lambda self: (embedding, q))
    with caplog.at_level("WARNING", logger="scdefr.model"):
        _, _, clusters = model.predict()
    assert list(clusters.categories) == ["0", "1", "2", "3"] and "3" not in set(clusters)
    assert "1 of the 4 clusters hold no cell" in caplog.text
    monkeypatch.undo()

    # a checkpoint from before the option existed reads its clusters off Q itself
    path = tmp_path / "old.model.pt"
    SCDEFR(make_graph_adata(), 4, seed=2, **QUICK).fit(path)
    saved = torch.load(path, weights_only=True)
    del saved["extra"]["model_options"]["smoothing_steps"]
    torch.save(saved, path)
    _, soft, _ = SCDEFR.load(path, make_graph_adata()).predict()
    np.testing.assert_allclose(soft, raw.obsm["scdefr_soft"], rtol=1e-6)


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
    assert all(np.array_equal(a, b) for a, b in zip(parts, again)) and len(parts) == len(again)


def test_inference_is_one_pass_over_the_whole_graph():
    """Trained in mini-batches, embedded over the whole graph: for the same weights z equals the
    full-batch plan's (no edge between batches is cut), and BatchNorm holds all cells' statistics."""
    graph = CellGraph.from_anndata(make_graph_adata())
    module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=QUICK["hidden_dims"])
    batched = TrainingPlan(module, graph, TrainingConfig(batch_size=60, kmeans_n_init=2), lambda z: (4, {}))
    batched._run_phase("pretrain", 2)
    full = TrainingPlan(copy.deepcopy(module), graph, TrainingConfig(batch_size=0), lambda z: (4, {}))
    z_batched, z_full = batched.embed()[0], full.embed()[0]
    np.testing.assert_allclose(z_batched, z_full, rtol=1e-5, atol=1e-5)

    linear, norm = module.autoencoder[0][0], module.autoencoder[0][1]
    with torch.no_grad():
        first_layer = linear(torch.as_tensor(graph.encoder_input(None)))
    torch.testing.assert_close(norm.running_mean, first_layer.mean(dim=0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.running_var, first_layer.var(dim=0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.01 and not module.training

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
        ({"n_clusters": 0}, "positive integer"),
        ({"pretrain_epochs": -2}, "pretrain epochs"),
        ({"sigma": 1.5}, "sigma"),
        ({"lr": 0.0}, "lr"),
        ({"dropout": 1.0}, "dropout"),
        ({"zinb_form": "dense"}, "zinb form"),
        ({"graph_loss": "dense"}, "graph loss"),
        ({"input_scaling": "zscore"}, "input scaling"),
        ({"input_noise": -1.0}, "input noise"),
        ({"cluster_balance": -1.0}, "cluster balance"),
        ({"cluster_balance": float("nan")}, "cluster balance"),
        ({"smoothing_steps": -1}, "smoothing steps"),
        ({"smoothing_steps": 1.5}, "smoothing steps"),
    ],
)
def test_impossible_parameters_are_refused(options, message):
    options = {"n_clusters": 3, **QUICK, **options}
    with pytest.raises(ScdefrError, match=message):
        SCDEFR(make_graph_adata(n_cells=40), **options)


def test_joint_minibatches_normalise_the_encoders_with_whole_graph_statistics():
    """A Cluster-GCN batch holds a few communities. In the joint phase its cells are scored against
    fixed centres, so the encoders' BatchNorm uses the statistics of every cell (refreshed at the
    start of each epoch, as inference computes them), not the batch's own; pre-training keeps the
    batch's."""
    graph = CellGraph.from_anndata(make_graph_adata(n_cells=120))
    module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=QUICK["hidden_dims"])
    plan = TrainingPlan(module, graph, TrainingConfig(batch_size=40, kmeans_n_init=2), lambda z: (3, {}))
    norm = plan._encoder_norms()[0]
    seen = []
    norm.register_forward_hook(lambda layer, inputs, output: seen.append((layer.training, layer.running_mean.clone())))
    plan._run_phase("pretrain", 1)
    assert len(seen) == 3 and all(training for training, _ in seen)  # three batches, their own statistics
    plan.initialise_centres()
    reference = copy.deepcopy(plan)
    reference.refresh_batchnorm(reference.whole_graph())
    expected = reference._encoder_norms()[0].running_mean
    seen.clear()
    plan._run_phase("joint", 1)
    batches = [mean for training, mean in seen if not training]
    assert len(batches) == 3
    for mean in batches:
        torch.testing.assert_close(mean, expected)
    assert all(m.training for m in plan.module.decoder.modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_first_joint_epoch_reuses_the_statistics_of_the_centres_pass():
    """The pass that placed the centres left every cell's statistics for the same weights, so the
    first joint epoch makes no whole-graph pass of its own; later epochs (the weights moved) do,
    and so does a run resumed from the checkpoint written after the centres."""
    graph = CellGraph.from_anndata(make_graph_adata(n_cells=120))
    module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=QUICK["hidden_dims"])
    plan = TrainingPlan(module, graph, TrainingConfig(batch_size=40, kmeans_n_init=2), lambda z: (3, {}))
    plan._run_phase("pretrain", 1)
    plan.initialise_centres()
    resumed = copy.deepcopy(plan)
    resumed._norms_match_weights = False  # what a plan built from a checkpoint starts with
    for run in (plan, resumed):
        passes = []
        run.module.encode = _counting(run.module.encode, passes)
        run._run_phase("joint", 1)
        assert passes.count(graph.n_cells) == (0 if run is plan else 1)
        passes.clear()
        run._run_phase("joint", 2)
        assert passes.count(graph.n_cells) == 1
    torch.testing.assert_close(plan.module.state_dict(), resumed.module.state_dict())


def _counting(encode, cells_seen: list):
    def counted(x, adjacency):
        cells_seen.append(x.shape[0])
        return encode(x, adjacency)
    return counted


def test_joint_phase_keeps_the_pretraining_adam_moments():
    """The joint optimiser continues pre-training's Adam state (a fresh Adam's sign steps jolt the
    embedding away from the KMeans centres) and adds the centres as a second group at the joint rate."""
    graph = CellGraph.from_anndata(make_graph_adata(n_cells=40))
    module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=QUICK["hidden_dims"])
    config = TrainingConfig(pretrain_epochs=3, epochs=2, lr=2e-4, batch_size=0, kmeans_n_init=2)
    plan = TrainingPlan(module, graph, config, lambda embedding: (3, {"method": "given"}))
    plan._run_phase("pretrain", config.pretrain_epochs)
    first_weight = next(module.parameters())
    moments = plan.optimizer.state[first_weight]["exp_avg_sq"].clone()
    plan.initialise_centres()
    groups = plan.optimizer.param_groups
    assert [group["lr"] for group in groups] == [2e-4, 2e-4]
    assert groups[1]["params"] == [module.cluster_centres]
    assert int(plan.optimizer.state[first_weight]["step"]) == config.pretrain_epochs
    torch.testing.assert_close(plan.optimizer.state[first_weight]["exp_avg_sq"], moments)


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


def test_short_default_schedule_fills_every_cluster_asked_for():
    """Regression: with the default network on unscaled X, 5 + 5 epochs put every cell in one of the
    4 clusters asked for (training began with an embedding without structure and diverging graph
    logits). Scaled input gives the planted types from the start."""
    adata = make_graph_adata(n_cells=200)
    tl.scdefr(adata, 4, pretrain_epochs=5, epochs=5, kmeans_n_init=2)
    sizes = adata.obs["scdefr_cluster"].value_counts()
    assert (sizes > 0).sum() == 4
    assert adjusted_rand_score(adata.obs["cell_type"], adata.obs["scdefr_cluster"]) > 0.9


def test_automatic_epochs_keep_the_cells_seen_above_each_phase_reference_size():
    assert resolve_epochs(-1, "pretrain", 5_000) == 60
    assert resolve_epochs(-1, "pretrain", PRETRAIN_REFERENCE_CELLS) == 60
    assert resolve_epochs(-1, "pretrain", 5 * PRETRAIN_REFERENCE_CELLS) == 12
    # the joint phase shrinks from the largest full batch on: 40 x 5,000 / 10,000
    assert resolve_epochs(-1, "joint", JOINT_REFERENCE_CELLS) == 40 and resolve_epochs(-1, "joint", 10_000) == 20
    assert resolve_epochs(-1, "joint", 1000 * JOINT_REFERENCE_CELLS) == MIN_AUTO_EPOCHS
    assert resolve_epochs(7, "pretrain", 1000 * PRETRAIN_REFERENCE_CELLS) == 7  # a number given is kept


def test_training_runs_the_automatic_schedule(monkeypatch):
    monkeypatch.setattr(config, "PRETRAIN_REFERENCE_CELLS", 20)
    monkeypatch.setattr(config, "JOINT_REFERENCE_CELLS", 60)
    adata = make_graph_adata(n_cells=120)
    quick = {k: v for k, v in QUICK.items() if not k.endswith("epochs")}
    tl.scdefr(adata, 3, **quick)
    params, history = adata.uns["scdefr"]["params"], adata.uns["scdefr"]["history"]
    assert (params["pretrain_epochs_used"], params["epochs_used"]) == (10, 20)  # 60 x 20 / 120 and 40 x 60 / 120
    assert len(history["pretrain"]["loss"]) == 10 and len(history["joint"]["loss"]) == 20


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
    model = tl.scdefr(adata, 4, zinb_form="paper", **QUICK)
    assert model.module.config["zinb_form"] == "paper"
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


def test_input_noise_perturbs_pretraining_only_and_repeats():
    """Denoising pre-training draws its noise from the epoch's seed (same seed, same embedding), and
    the embedding is computed from the clean input (two inferences agree)."""

    def pretrained(noise):
        graph = CellGraph.from_anndata(make_graph_adata(n_cells=40))
        torch.manual_seed(0)
        module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=QUICK["hidden_dims"])
        plan = TrainingPlan(module, graph, TrainingConfig(batch_size=0, input_noise=noise), lambda e: (3, {}))
        plan._run_phase("pretrain", 3)
        first, second = plan.embed()[0], plan.embed()[0]
        np.testing.assert_array_equal(first, second)
        return first

    noisy = pretrained(1.0)
    np.testing.assert_array_equal(noisy, pretrained(1.0))
    assert not np.allclose(noisy, pretrained(0.0))


def test_cluster_balance_acts_on_the_joint_phase_only():
    """The same pre-training and centres; then the joint phase's KL term differs with the exponent,
    and the default (1) is DEC's target."""

    def joint_kl(**options):
        graph = CellGraph.from_anndata(make_graph_adata(n_cells=40))
        torch.manual_seed(0)
        module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=QUICK["hidden_dims"])
        config = TrainingConfig(pretrain_epochs=3, epochs=2, batch_size=0, kmeans_n_init=2, **options)
        plan = TrainingPlan(module, graph, config, lambda embedding: (3, {"method": "given"}))
        plan.train()
        return plan.state.history

    dec, explicit, balanced = joint_kl(), joint_kl(cluster_balance=1.0), joint_kl(cluster_balance=3.0)
    assert dec["pretrain"] == balanced["pretrain"]
    assert dec["joint"] == explicit["joint"]
    assert dec["joint"]["kl"] != balanced["joint"]["kl"]
