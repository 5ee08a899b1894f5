"""The training plan: phases, epochs, optimiser, BatchNorm statistics in mini-batches."""

import copy

import numpy as np
import torch
from builders import QUICK, make_graph_adata, make_plan

from scdefr import tl
from scdefr.data import CellGraph
from scdefr.nn import SCDEFRModule
from scdefr.options import NetworkOptions
from scdefr.plan import AUTO_EPOCHS, MIN_AUTO_EPOCHS, resolve_epochs


def run_phase(plan, phase, epochs):
    """Run ``phase`` of ``plan`` up to ``epochs`` epochs (continuing where it stands)."""
    plan.epochs[phase] = epochs
    plan._run_phase(phase)


def module_for(graph):
    return SCDEFRModule(graph.n_genes, graph.n_cells, NetworkOptions(hidden_dims=QUICK["hidden_dims"]))


def test_inference_is_one_pass_over_the_whole_graph():
    """Trained in mini-batches, embedded over the whole graph: for the same weights z equals the
    full-batch plan's (no edge between batches is cut), and BatchNorm holds all cells' statistics."""
    graph = CellGraph.from_anndata(make_graph_adata())
    module = module_for(graph)
    batched = make_plan(graph, module, n_clusters=4, batch_size=60)
    run_phase(batched, "pretrain", 2)
    full = make_plan(graph, copy.deepcopy(module), n_clusters=4, batch_size=0)
    z_batched, z_full = batched.embed().z.numpy(), full.embed().z.numpy()
    np.testing.assert_allclose(z_batched, z_full, rtol=1e-5, atol=1e-5)

    linear, norm = module.autoencoder[0][0], module.autoencoder[0][1]
    with torch.no_grad():
        first_layer = linear(torch.as_tensor(graph.encoder_input(None)))
    torch.testing.assert_close(norm.running_mean, first_layer.mean(dim=0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.running_var, first_layer.var(dim=0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.01 and not module.training


def test_joint_minibatches_normalise_the_encoders_with_whole_graph_statistics():
    """A Cluster-GCN batch holds a few communities. In the joint phase its cells are scored against
    fixed centres, so the encoders' BatchNorm uses the statistics of every cell (refreshed at the
    start of each epoch, as inference computes them), not the batch's own; pre-training keeps the
    batch's."""
    graph = CellGraph.from_anndata(make_graph_adata(n_cells=120))
    module = module_for(graph)
    plan = make_plan(graph, module, batch_size=40)
    norm = plan.module.encoder_norms()[0]
    seen = []
    norm.register_forward_hook(lambda layer, inputs, output: seen.append((layer.training, layer.running_mean.clone())))
    run_phase(plan, "pretrain", 1)
    assert len(seen) == 3 and all(training for training, _ in seen)  # three batches, their own statistics
    plan._initialise_centres()
    reference = copy.deepcopy(plan)
    batch = reference.whole_graph()
    reference.module.refresh_batchnorm(batch.x, batch.adjacency)
    expected = reference.module.encoder_norms()[0].running_mean
    seen.clear()
    run_phase(plan, "joint", 1)
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
    module = module_for(graph)
    plan = make_plan(graph, module, batch_size=40)
    run_phase(plan, "pretrain", 1)
    plan._initialise_centres()
    resumed = copy.deepcopy(plan)
    resumed._norms_match_weights = False  # what a plan built from a checkpoint starts with
    for run in (plan, resumed):
        passes = []
        run.module.encode = _counting(run.module.encode, passes)
        run_phase(run, "joint", 1)
        assert passes.count(graph.n_cells) == (0 if run is plan else 1)
        passes.clear()
        run_phase(run, "joint", 2)
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
    module = module_for(graph)
    plan = make_plan(graph, module, pretrain_epochs=3, epochs=2, lr=2e-4, batch_size=0)
    run_phase(plan, "pretrain", 3)
    first_weight = next(module.parameters())
    moments = plan.optimizer.state[first_weight]["exp_avg_sq"].clone()
    plan._initialise_centres()
    groups = plan.optimizer.param_groups
    assert [group["lr"] for group in groups] == [2e-4, 2e-4]
    assert groups[1]["params"] == [module.cluster_centres]
    assert int(plan.optimizer.state[first_weight]["step"]) == 3
    torch.testing.assert_close(plan.optimizer.state[first_weight]["exp_avg_sq"], moments)


def test_fresh_joint_optimiser_starts_without_the_pretraining_moments():
    """joint_optimizer='fresh' (the paper's): a new Adam over the network and the centres at the joint rate."""
    graph = CellGraph.from_anndata(make_graph_adata(n_cells=40))
    module = module_for(graph)
    plan = make_plan(graph, module, lr=2e-4, batch_size=0, joint_optimizer="fresh")
    run_phase(plan, "pretrain", 3)
    pretraining = plan.optimizer
    plan._initialise_centres()
    assert plan.optimizer is not pretraining and not plan.optimizer.state
    groups = plan.optimizer.param_groups
    assert [group["lr"] for group in groups] == [2e-4, 2e-4] and groups[1]["params"] == [module.cluster_centres]
    run_phase(plan, "joint", 2)
    assert int(plan.optimizer.state[next(module.parameters())]["step"]) == 2


def test_joint_phase_in_eval_mode_has_no_dropout_and_frozen_batchnorm():
    """joint_mode='eval' with batchnorm_stats='running' (the paper's): every joint forward pass in
    evaluation mode, on the running averages pre-training left; joint_mode='train' keeps train mode."""

    def joint_modes(joint_mode):
        graph = CellGraph.from_anndata(make_graph_adata(n_cells=40))
        plan = make_plan(graph, module_for(graph), batch_size=0, joint_mode=joint_mode, batchnorm_stats="running")
        seen = []
        plan.module.register_forward_pre_hook(lambda module, inputs: seen.append(module.training))
        run_phase(plan, "pretrain", 2)
        assert seen and all(seen)
        plan._initialise_centres()
        norm = plan.module.encoder_norms()[0]
        running = norm.running_mean.clone()
        seen.clear()
        run_phase(plan, "joint", 2)
        return set(seen), torch.equal(norm.running_mean, running)

    assert joint_modes("train") == ({True}, False)
    assert joint_modes("eval") == ({False}, True)


def test_running_batchnorm_statistics_are_never_re_estimated():
    """Placing the centres re-estimates the encoders' statistics on every cell, unless 'running' keeps
    the averages training left (as the paper's eval-mode passes use them)."""
    changed = {}
    for stats in ("refreshed", "running"):
        graph = CellGraph.from_anndata(make_graph_adata(n_cells=40))
        torch.manual_seed(0)
        plan = make_plan(graph, module_for(graph), batch_size=0, batchnorm_stats=stats)
        run_phase(plan, "pretrain", 2)
        norm = plan.module.encoder_norms()[0]
        before = norm.running_mean.clone()
        plan._initialise_centres()
        changed[stats] = not torch.equal(norm.running_mean, before)
    assert changed == {"refreshed": True, "running": False}


def test_automatic_epochs_keep_the_cells_seen_above_each_phase_reference_size():
    pretrain_reference, joint_reference = AUTO_EPOCHS["pretrain"][1], AUTO_EPOCHS["joint"][1]
    assert resolve_epochs("auto", "pretrain", 5_000) == 60
    assert resolve_epochs("auto", "pretrain", pretrain_reference) == 60
    assert resolve_epochs("auto", "pretrain", 5 * pretrain_reference) == 12
    # the joint phase shrinks from the largest full batch on: 40 x 5,000 / 10,000
    assert resolve_epochs("auto", "joint", joint_reference) == 40 and resolve_epochs("auto", "joint", 10_000) == 20
    assert resolve_epochs("auto", "joint", 1000 * joint_reference) == MIN_AUTO_EPOCHS
    assert resolve_epochs(7, "pretrain", 1000 * pretrain_reference) == 7  # a number given is kept


def test_training_runs_the_automatic_schedule(monkeypatch):
    from scdefr import plan

    monkeypatch.setitem(plan.AUTO_EPOCHS, "pretrain", (60, 20))
    monkeypatch.setitem(plan.AUTO_EPOCHS, "joint", (40, 60))
    adata = make_graph_adata(n_cells=120)
    quick = {k: v for k, v in QUICK.items() if not k.endswith("epochs")}
    tl.scdefr(adata, 3, **quick)
    params, history = adata.uns["scdefr"]["params"], adata.uns["scdefr"]["history"]
    assert (params["pretrain_epochs_used"], params["epochs_used"]) == (10, 20)  # 60 x 20 / 120 and 40 x 60 / 120
    assert len(history["pretrain"]["loss"]) == 10 and len(history["joint"]["loss"]) == 20


def test_input_noise_perturbs_pretraining_only_and_repeats():
    """Denoising pre-training draws its noise from the epoch's seed (same seed, same embedding), and
    the embedding is computed from the clean input (two inferences agree)."""

    def pretrained(noise):
        graph = CellGraph.from_anndata(make_graph_adata(n_cells=40))
        torch.manual_seed(0)
        module = module_for(graph)
        plan = make_plan(graph, module, batch_size=0, input_noise=noise)
        run_phase(plan, "pretrain", 3)
        first, second = plan.embed().z.numpy(), plan.embed().z.numpy()
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
        module = module_for(graph)
        plan = make_plan(graph, module, pretrain_epochs=3, epochs=2, batch_size=0, **options)
        plan.train()
        return plan.state.history

    dec, explicit, balanced = joint_kl(), joint_kl(cluster_balance=1.0), joint_kl(cluster_balance=3.0)
    assert dec["pretrain"] == balanced["pretrain"]
    assert dec["joint"] == explicit["joint"]
    assert dec["joint"]["kl"] != balanced["joint"]["kl"]
