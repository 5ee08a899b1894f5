"""The leave-one-dataset-out protocol (benchmarks/protocol.py): a dataset's score never takes part in
choosing what it is scored with, and the runs it caches are the models the package would fit."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def protocol(monkeypatch, repo_root, tmp_path):
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    module = importlib.import_module("protocol")
    # results go to tmp_path, whether read here or appended by _common
    monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(importlib.import_module("_common"), "RESULTS_DIR", tmp_path)
    return module


def test_the_left_out_dataset_does_not_choose_its_own_candidate(protocol):
    """Candidate 'a' is far ahead on d1 alone, 'b' ahead on every other dataset: d1 is scored with 'b'
    (chosen on d2-d4), every other dataset with 'a' or 'b' as the others decide."""
    means = {"a": {"d1": 0.9, "d2": 0.5, "d3": 0.5, "d4": 0.5}, "b": {"d1": 0.2, "d2": 0.6, "d3": 0.6, "d4": 0.6}}
    rows = [
        {"read_out": candidate, "dataset": dataset, "seed": seed, "ari": mean + (seed - 1) * 0.01}
        for candidate, scores in means.items()
        for dataset, mean in scores.items()
        for seed in (0, 1, 2)
    ]
    chosen = protocol.leave_one_out(pd.DataFrame(rows), ["d1", "d2", "d3", "d4"])
    assert chosen.loc["d1", "read_out"] == "b" and chosen.loc["d1", "ari"] == pytest.approx(0.2)
    # without d2, a leads (0.9 + 0.5 + 0.5 against 0.2 + 0.6 + 0.6)
    assert chosen.loc["d2", "read_out"] == "a" and chosen.loc["d2", "ari"] == pytest.approx(0.5)
    assert chosen.loc["d2", "sd"] == pytest.approx(0.01)
    # a candidate missing a dataset does not compete, nor one that emptied a requested cluster
    partial = pd.DataFrame(rows + [{"read_out": "c", "dataset": "d2", "seed": 0, "ari": 1.0}])
    assert "c" not in set(protocol.leave_one_out(partial, ["d1", "d2", "d3", "d4"])["read_out"])
    sized = pd.DataFrame(rows).assign(K=4, n_clusters=4)
    sized.loc[(sized["read_out"] == "b") & (sized["dataset"] == "d3") & (sized["seed"] == 0), "n_clusters"] = 3
    assert set(protocol.leave_one_out(sized, ["d1", "d2", "d3", "d4"])["read_out"]) == {"a"}


def test_every_candidate_read_out_is_a_valid_package_option_set(protocol):
    from scdefr.options import ClusterOptions

    for options in protocol.READOUTS.values():
        ClusterOptions(**options)  # raises on an unknown name or a value out of bounds
    assert len({tuple(sorted(o.items())) for o in protocol.READOUTS.values()}) == len(protocol.READOUTS)


def test_shared_pretraining_gives_the_models_fitted_on_their_own(protocol):
    from builders import make_graph_adata

    from scdefr.model import SCDEFR

    adata = make_graph_adata(n_cells=150, n_types=3)
    options = dict(pretrain_epochs=3, epochs=2, hidden_dims=(16, 8, 4))
    shared = protocol.fit_sharing_pretraining(adata, 1, {"true": 3, "auto": "auto"}, **options)
    for mode, k in (("true", 3), ("auto", "auto")):
        alone = SCDEFR(adata, k, seed=1, **options).fit()
        model, seconds = shared[mode]
        assert seconds > 0
        np.testing.assert_array_equal(model.predict()[0], alone.predict()[0])
        assert model.state.n_clusters_info == alone.state.n_clusters_info


def test_the_report_sets_the_left_out_score_beside_the_best_baseline(protocol, tmp_path):
    datasets = protocol.ALL_DATASETS[:3]
    scores = [
        {"dataset": name, "seed": seed, "k_mode": mode, "read_out": candidate, "ari": ari}
        for name in datasets
        for seed in (0, 1, 2)
        for mode in ("true", "auto")
        for candidate, ari in (("centres_s4", 0.5), ("merge5_s0", 0.7))
    ]
    pd.DataFrame(scores).to_csv(tmp_path / protocol.SCORES_FILE, index=False)
    bases = [
        {"dataset": name, "seed": seed, "method": method, "ari": ari}
        for name in datasets
        for seed in (0, 1, 2)
        for method, ari in (("leiden_default", 0.4), ("leiden_true_k", 0.6), ("kmeans_pca", 0.55))
    ]
    pd.DataFrame(bases).to_csv(tmp_path / protocol.BASELINES_FILE, index=False)
    report = protocol.lodo_report("merge5_s0", "centres_s4")
    assert f"| {datasets[0]} | 0.700 ± 0.000 | merge5_s0 | 0.700 ± 0.000 | 0.700 ± 0.000 | 0.500 ± 0.000 |" in report
    assert "| +0.100 |" in report and "Above the target on 3 of 3" in report


def test_an_external_set_not_downloaded_stops_naming_where_to_get_it(protocol, tmp_path):
    name = next(iter(protocol.EXTERNAL))
    file, label_key, url = protocol.EXTERNAL[name]
    assert name in protocol.ALL_DATASETS and protocol.labels_key(name) == label_key
    with pytest.raises(SystemExit, match=f"{file} is missing: download it from {url}"):
        protocol.counts_path(name, tmp_path)
    (tmp_path / "external").mkdir()
    (tmp_path / "external" / file).touch()
    assert protocol.counts_path(name, tmp_path) == tmp_path / "external" / file


def test_unseen_files_report_the_default_beside_the_best_baseline_without_refitting(protocol, tmp_path):
    methods = {"scdefr_true": 0.6, "scdefr_auto": 0.5, "leiden_default": 0.4, "leiden_true_k": 0.3, "kmeans_pca": 0.55}
    rows = [
        {"dataset": "worm", "seed": seed, "method": method, "n_clusters": 10, "ari": ari + 0.01 * seed}
        for seed in (0, 1, 2)
        for method, ari in methods.items()
    ]
    pd.DataFrame(rows).to_csv(tmp_path / protocol.UNSEEN_FILE, index=False)
    # every seed is recorded, so nothing is read or fitted: the file need not exist
    report = protocol.unseen([tmp_path / "worm.h5"], "Y", (0, 1, 2), tmp_path / "cache", "merge8_s0_r5_both")
    assert "| worm | 0.610 ± 0.010 (10) | 0.510 ± 0.010 (10) | 0.410 ± 0.010 (10) |" in report
    assert report.splitlines()[2].endswith("| +0.050 |")
    assert not (tmp_path / "cache").exists()


def test_every_ablation_is_a_valid_package_option_set(protocol):
    from scdefr.options import NetworkOptions, TrainingOptions

    names = set(NetworkOptions.names()) | set(TrainingOptions.names())
    for options in protocol.ABLATIONS.values():
        assert set(options) <= names
        NetworkOptions(**{k: v for k, v in options.items() if k in NetworkOptions.names()})
        TrainingOptions(**{k: v for k, v in options.items() if k in TrainingOptions.names()})


def test_the_ablation_table_subtracts_the_default_of_the_same_seeds(protocol, tmp_path):
    scores = [
        {"dataset": "d1", "seed": seed, "k_mode": mode, "read_out": "merge8_s0", "ari": 0.6 + 0.1 * seed + offset}
        for seed in (0, 1, 2)
        for mode, offset in (("true", 0.0), ("auto", 0.2))
    ]
    pd.DataFrame(scores).to_csv(tmp_path / protocol.SCORES_FILE, index=False)
    ablations = [{"dataset": "d1", "seed": 0, "setting": "no_graph_loss", "read_out": "merge8_s0", "ari": 0.55}]
    pd.DataFrame(ablations).to_csv(tmp_path / protocol.ABLATIONS_FILE, index=False)
    report = protocol.ablation_report("merge8_s0", ["d1"], [0])
    # seed 0 with the true k only: 0.55 - 0.60, not against the mean of three seeds nor auto
    assert "| d1 | 0 | 0.600 | -0.050 |" in report and "| mean |  | 0.600 | -0.050 |" in report
    # a setting fitted at fewer seeds than another is compared seed by seed: here (0.55 - 0.6 + 0.9 - 0.7) / 2
    ablations += [
        {"dataset": "d1", "seed": 1, "setting": "no_graph_loss", "read_out": "merge8_s0", "ari": 0.9},
        {"dataset": "d1", "seed": 0, "setting": "autoencoder_reads_itself", "read_out": "merge8_s0", "ari": 0.7},
    ]
    pd.DataFrame(ablations).to_csv(tmp_path / protocol.ABLATIONS_FILE, index=False)
    report = protocol.ablation_report("merge8_s0", ["d1"], [0, 1, 2])
    assert "| d1 | 0, 1 | 0.650 | +0.075 | +0.100 |" in report
    # asked for one setting: its column alone, beside the default of the seeds that setting was fitted at
    report = protocol.ablation_report("merge8_s0", ["d1"], [0, 1, 2], ["autoencoder_reads_itself"])
    assert "| d1 | 0 | 0.600 | +0.100 |" in report and "no_graph_loss" not in report


def test_an_ablation_is_fitted_once_and_read_out_again_from_the_cache(protocol, tmp_path, monkeypatch):
    from builders import make_graph_adata

    adata = make_graph_adata(n_cells=150, n_types=3)
    truth = adata.obs.pop("cell_type").astype(str).to_numpy()
    monkeypatch.setattr(protocol, "graph_input", lambda name, seed, cache: (adata.copy(), truth))
    monkeypatch.setattr(protocol, "ABLATIONS", {"quick": dict(pretrain_epochs=3, epochs=2, hidden_dims=(16, 8, 4))})
    scores = [
        {"dataset": "d1", "seed": 0, "k_mode": mode, "read_out": r, "ari": 0.5}
        for r in ("merge8_s0", "kmeans_s0")
        for mode in ("true", "auto")
    ]
    pd.DataFrame(scores).to_csv(tmp_path / protocol.SCORES_FILE, index=False)
    cache = tmp_path / "cache"
    protocol.ablate(["quick"], ["d1"], [0], cache, "merge8_s0")
    saved = protocol.ablation_checkpoint(cache, "d1", 0, "quick")
    written = saved.stat().st_mtime_ns
    report = protocol.ablate(["quick"], ["d1"], [0], cache, "kmeans_s0")
    rows = pd.read_csv(tmp_path / protocol.ABLATIONS_FILE)
    assert list(rows["read_out"]) == ["merge8_s0", "kmeans_s0"] and "| d1 | 0 | 0.500 |" in report
    # the second read-out loaded the model the first one fitted: no time spent fitting, the file untouched
    assert rows["fit_s"].iloc[0] > 0 and pd.isna(rows["fit_s"].iloc[1]) and saved.stat().st_mtime_ns == written
    protocol.ablate(["quick"], ["d1"], [0], cache, "kmeans_s0")  # nothing left to score
    assert len(pd.read_csv(tmp_path / protocol.ABLATIONS_FILE)) == 2


def test_the_consensus_sees_through_relabelled_members(protocol):
    first = np.repeat([0, 1, 2], 20)
    relabelled = (first + 1) % 3
    dissenting = first.copy()
    dissenting[:5] = 1  # five cells of cluster 0 moved by one member only
    found = protocol.consensus([first, relabelled, dissenting], 3, seed=0)
    for labels in found.values():
        assert protocol.score(first, labels)["ari"] == pytest.approx(1.0)


def test_each_resolution_is_scored_at_the_k_it_chooses_on_the_cached_embedding(protocol, tmp_path, monkeypatch):
    from builders import make_graph_adata

    from scdefr.clustering import estimate_n_clusters

    adata = make_graph_adata(n_cells=150, n_types=3)
    truth = adata.obs.pop("cell_type").astype(str).to_numpy()
    monkeypatch.setattr(protocol, "graph_input", lambda name, seed, cache: (adata.copy(), truth))
    # an embedding that separates the planted types, as a pre-trained one would: no training here
    types = np.unique(truth, return_inverse=True)[1]
    embedding = np.random.default_rng(0).normal(size=(150, 4)) + 20 * np.eye(4)[types]
    (tmp_path / "pretrained").mkdir()
    for name in ("d1", "d2"):
        np.save(tmp_path / "pretrained" / f"{name}.seed0.npy", embedding)
    report = protocol.resolutions(["d1", "d2"], [0], tmp_path, "merge8_s0_r5")
    rows = pd.read_csv(tmp_path / protocol.RESOLUTIONS_FILE)
    assert len(rows) == 2 * len(protocol.LEIDEN_RESOLUTIONS) and set(rows["k_true"]) == {3}
    for row in rows.itertuples():
        assert row.K == estimate_n_clusters(embedding, resolution=row.resolution, seed=0)[0]
    assert rows["ari_true_k"].min() == pytest.approx(1.0)  # the merge read-out at the true k finds the types
    assert rows.loc[rows["K"] == 3, "ari"].min() == pytest.approx(1.0)
    assert "| d1 | 3 |" in report and "Mean proxy ARI over the datasets: r = 0.1" in report
    protocol.resolutions(["d1", "d2"], [0], tmp_path, "merge8_s0_r5")  # cached: nothing scored twice
    assert len(pd.read_csv(tmp_path / protocol.RESOLUTIONS_FILE)) == len(rows)


def test_resolutions_refuse_a_read_out_they_cannot_apply(protocol, capsys):
    with pytest.raises(SystemExit) as stop:
        protocol.main(["resolutions", "--default", "centres_s4", "--cache", "unused"])
    assert stop.value.code == 2
    assert "needs a merge read-out without smoothing as --default, not centres_s4" in capsys.readouterr().err
