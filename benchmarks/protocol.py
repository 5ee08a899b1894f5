"""Leave-one-dataset-out protocol: every default is chosen on the other datasets, never on the one scored.

The datasets are the six shared sets, a public set outside them (``EXTERNAL``, downloaded into
``CACHE/external``) and three simulations whose type sizes are very unequal (one type of 52-70 % of
the cells, several under 3 %). A *candidate* is a read-out of the trained model
(``READOUTS``: the package's ``readout`` and ``smoothing_steps`` options). For each dataset in turn,
the candidate with the highest mean ARI over the *other* datasets (each the mean over seeds 0-2,
each weighing the same) is chosen and scored on the one left out. Beside it stand the baselines
the project measures against, run on the same raw counts: normalise, log1p, 2,000 HVG, scale,
50 PCs, 15 neighbours; Leiden at resolution 1, Leiden bisected to the true k, KMeans on the PCs
with the true k. The target of a dataset is the best of the three.

    python benchmarks/protocol.py baselines                  # the three baselines, all sets x seeds 0-2
    python benchmarks/protocol.py train --k true auto        # scDEFR runs (package defaults), cached
    python benchmarks/protocol.py lodo                       # the left-out table
    python benchmarks/protocol.py ablate --seeds 0           # parts of the method switched off
    python benchmarks/protocol.py ensemble                   # consensus of the cached seeds' clusterings
    python benchmarks/protocol.py resolutions --seeds 0      # the Leiden resolution of --n-clusters auto
    python benchmarks/protocol.py unseen --files F.h5 --label-key Y  # defaults on files outside every choice

``train`` fits each (dataset, seed) once per K mode, pre-training shared between the modes, and
keeps each fitted model as a checkpoint in ``--cache``; every candidate read-out is then the
package's own ``SCDEFR.predict`` of that model. ``unseen`` scores the shipped default and the
baselines on labelled files kept out of the pool, so out of every choice. Labels are removed before
training and only score the results, and with ``--k true`` say how many clusters to ask for (as
``--n-clusters`` would).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
from pathlib import Path

import baselines
import numpy as np
import pandas as pd
from _common import DATASETS, LABEL_KEY, RESULTS_DIR, SEEDS, append_rows, dataset_path, score, stopwatch

logger = logging.getLogger("benchmarks.protocol")

BASELINES_FILE = "protocol_baselines.csv"
SCORES_FILE = "protocol_scores.csv"
ABLATIONS_FILE = "protocol_ablations.csv"
RESOLUTIONS_FILE = "protocol_resolutions.csv"
UNSEEN_FILE = "protocol_unseen.csv"
BASELINES = ("leiden_default", "leiden_true_k", "kmeans_pca")

# Unequal type sizes, from easy to hard (marker fold change; 0.8 is the simulator's default). Each is
# one file from its own simulation seed; the training seeds vary.
SIMULATIONS = {
    "sim_skew6": dict(
        n_cells=2500, n_clusters=6, seed=13, marker_log_fold_change=1.2,
        type_proportions=(0.70, 0.15, 0.08, 0.03, 0.025, 0.015),
    ),
    "sim_skew8": dict(
        n_cells=3000, n_clusters=8, seed=11, marker_log_fold_change=1.0,
        type_proportions=(0.60, 0.15, 0.10, 0.06, 0.04, 0.025, 0.015, 0.01),
    ),
    "sim_skew12": dict(
        n_cells=4000, n_clusters=12, seed=12,
        type_proportions=(0.52, 0.12, 0.09, 0.07, 0.05, 0.04, 0.03, 0.025, 0.02, 0.015, 0.01, 0.01),
    ),
}  # fmt: skip
# Public labelled sets outside ../shared/datasets, in the pool like the six shared ones: name -> (file
# in CACHE/external, obs column of its labels, where to download it).
EXTERNAL = {
    "human_kidney_top2000": (
        "human_kidney_counts_top2000.h5", "Y",
        "https://github.com/ttgump/scDCC/raw/142e4e0370f4134751e92a160f95f97fce8db369/data/Small_Datasets/"
        "human_kidney_counts_top2000.h5",
    ),
}  # fmt: skip
ALL_DATASETS = (*DATASETS, *EXTERNAL, *SIMULATIONS)

MERGE_FACTORS = (3, 5, 8, 12, 16)
# Candidate read-outs of one trained model: keywords of the package's cluster options.
READOUTS = {
    **{f"{readout}_s{steps}": dict(readout=readout, smoothing_steps=steps) for readout in ("centres", "kmeans")
       for steps in (0, 4)},
    **{f"merge{factor}_s{steps}": dict(readout="merge", merge_factor=factor, smoothing_steps=steps,
                                       merge_restarts=1, merge_embeddings="final")
       for factor in MERGE_FACTORS for steps in (0, 4)},
    **{f"merge{factor}_s0_r{restarts}": dict(readout="merge", merge_factor=factor, smoothing_steps=0,
                                             merge_restarts=restarts, merge_embeddings="final")
       for factor in (5, 8, 12) for restarts in (3, 5, 10)},
    # the same runs on the pre-trained embedding too, the most modular partition of either kept
    **{f"merge{factor}_s0_r{restarts}_both": dict(readout="merge", merge_factor=factor, smoothing_steps=0,
                                                  merge_restarts=restarts, merge_embeddings="both")
       for factor, restarts in ((5, 5), (8, 3), (8, 5), (8, 10), (12, 5))},
}  # fmt: skip

# One part of the method switched off each (keywords of the package's options), trained with the true
# k and read out with the package's default, against the cached default runs of the same seeds.
ABLATIONS = {
    "no_graph_loss": dict(weight_rec_pretrain=0.0, weight_rec=0.0),
    "no_neighbours_in_graph_encoder": dict(tag_hops=0),
    "autoencoder_reads_itself": dict(sigma=1.0),
    # DEC's target q^2 / f without the division by the soft cluster sizes f, which pushes towards equal sizes
    "dec_target_without_cluster_sizes": dict(cluster_balance=0.0),
}

# Candidate Leiden resolutions of `--n-clusters auto` (the kNN graph of the pre-trained embedding).
LEIDEN_RESOLUTIONS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def counts_path(name: str, cache: Path) -> Path:
    """The raw counts of a dataset; a simulation is written into the cache the first time, and an
    external set must have been downloaded into ``cache/external``."""
    if name in EXTERNAL:
        file, _, url = EXTERNAL[name]
        if not (cache / "external" / file).exists():
            raise SystemExit(f"{cache / 'external' / file} is missing: download it from {url}")
        return cache / "external" / file
    if name not in SIMULATIONS:
        return dataset_path(name)
    path = cache / "sims" / f"{name}.h5ad"
    if not path.exists():
        from scdefr._files.h5ad import write_h5ad
        from scdefr.simulate import simulate_counts

        path.parent.mkdir(parents=True, exist_ok=True)
        write_h5ad(simulate_counts(n_genes=2000, **SIMULATIONS[name]), path)
    return path


def labels_key(name: str) -> str:
    return EXTERNAL[name][1] if name in EXTERNAL else LABEL_KEY


def graph_input(name: str, seed: int, cache: Path, path: Path | None = None, label_key: str | None = None):
    """The graph-step AnnData `scdefr run` trains on (package defaults) and its labels, split off;
    ``path`` and ``label_key`` read a file outside the protocol's datasets."""
    from scdefr import io, pp

    adata = pp.qc(io.read_counts(path or counts_path(name, cache)))
    pp.build_graph(adata, seed=seed)
    truth = adata.obs.pop(label_key or labels_key(name)).astype(str).to_numpy()
    return adata, truth


# --- baselines ----------------------------------------------------------------------------------


def scanpy_baselines(adata, n_clusters: int, seed: int) -> dict[str, np.ndarray]:
    """The plain scanpy run on raw counts; Leiden at resolution 1 and at the true k, KMeans on the PCs."""
    import scanpy as sc
    from sklearn.cluster import KMeans

    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, subset=True)
    sc.pp.scale(adata, max_value=10)
    sc.tl.pca(adata, n_comps=50, random_state=seed)
    sc.pp.neighbors(adata, n_neighbors=15, random_state=seed)
    leiden_default, _ = baselines.leiden(adata, 1.0, seed)
    leiden_true_k, _, _ = baselines.leiden_at_k(adata, n_clusters, seed)
    kmeans = KMeans(n_clusters=n_clusters, n_init=20, random_state=seed).fit_predict(adata.obsm["X_pca"])
    return {"leiden_default": leiden_default, "leiden_true_k": leiden_true_k, "kmeans_pca": kmeans}


def run_baselines(datasets, seeds, cache: Path) -> None:
    from scdefr import io

    done = set()
    if (RESULTS_DIR / BASELINES_FILE).exists():
        done = set(pd.read_csv(RESULTS_DIR / BASELINES_FILE)[["dataset", "seed"]].itertuples(index=False, name=None))
    for name in datasets:
        for seed in (seed for seed in seeds if (name, seed) not in done):
            adata = io.read_counts(counts_path(name, cache))
            truth = adata.obs.pop(labels_key(name)).astype(str).to_numpy()
            with stopwatch() as timing:
                found = scanpy_baselines(adata, len(set(truth)), seed)
            rows = [
                {"dataset": name, "seed": seed, "method": method, "n_clusters": len(set(labels)),
                 "seconds": round(timing["seconds"], 1), **score(truth, labels)}
                for method, labels in found.items()
            ]  # fmt: skip
            append_rows(BASELINES_FILE, rows)
            logger.info("%s seed %d: %s", name, seed, ", ".join(f"{r['method']} {r['ari']:.3f}" for r in rows))


# --- scDEFR runs ------------------------------------------------------------------------------------


def checkpoint_path(cache: Path, name: str, seed: int, k_mode: str) -> Path:
    return cache / "models" / f"{name}.seed{seed}.{k_mode}.pt"


def pretrain(adata, seed: int, n_clusters: int | str, **options):
    """A model and its training plan after the pre-training phase (the joint phase not begun)."""
    from scdefr.model import SCDEFR
    from scdefr.plan import TrainingPlan

    model = SCDEFR(adata, n_clusters, seed=seed, **options)
    plan = TrainingPlan(
        model.module, model.graph, model.training, model.runtime, model.seed, model.device,
        model._init_centres, model._payload, model.state,
    )  # fmt: skip
    plan._run_phase("pretrain")
    return model, plan


def fit_sharing_pretraining(adata, seed: int, n_clusters: dict[str, int | str], **options) -> dict:
    """One fitted model per K mode (``options``: package options other than the defaults); pre-training
    runs once, and each mode continues from its state as a run resumed from a checkpoint would (same
    weights, optimiser state and epoch), so each equals a model fitted on its own."""
    from scdefr.model import SCDEFR

    with stopwatch() as pretraining:
        first, plan = pretrain(adata, seed, next(iter(n_clusters.values())), **options)
    pretrained = copy.deepcopy((first.module.state_dict(), plan.optimizer.state_dict(), first.state))
    models = {}
    for k_mode, k in n_clusters.items():
        model = SCDEFR(adata, k, seed=seed, **options)
        weights, optimizer, state = copy.deepcopy(pretrained)
        model.module.load_state_dict(weights)
        model._optimizer_state, model.state = optimizer, state
        with stopwatch() as joint:
            model.fit()
        models[k_mode] = (model, pretraining["seconds"] + joint["seconds"])
    return models


def train(datasets, seeds, k_modes, cache: Path, readouts=tuple(READOUTS)) -> None:
    """Fit what the cache lacks and score the candidate ``readouts`` of every model."""
    from scdefr.model import SCDEFR

    for name in datasets:
        for seed in seeds:
            adata, truth = graph_input(name, seed, cache)
            wanted = {"true": len(set(truth)), "auto": "auto"}
            missing = {mode: wanted[mode] for mode in k_modes if not checkpoint_path(cache, name, seed, mode).exists()}
            seconds = {}
            if missing:
                for mode, (model, spent) in fit_sharing_pretraining(adata, seed, missing).items():
                    path = checkpoint_path(cache, name, seed, mode)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    model.save(path)
                    seconds[mode] = round(spent, 1)
            rows = []
            for mode in k_modes:
                model = SCDEFR.load(checkpoint_path(cache, name, seed, mode), adata)
                for readout in readouts:
                    options = READOUTS[readout]
                    model.clusters = dataclasses.replace(model.clusters, **options)
                    _, _, clusters = model.predict()
                    rows.append({
                        "dataset": name, "seed": seed, "k_mode": mode, "read_out": readout,
                        "K": int(model.state.n_clusters_info["n_clusters"]), "n_clusters": len(clusters.categories),
                        "fit_s": seconds.get(mode, ""), **score(truth, np.asarray(clusters)),
                    })  # fmt: skip
            append_rows(SCORES_FILE, rows)
            logger.info(
                "%s seed %d: %s", name, seed,
                ", ".join(f"{r['k_mode']}/{r['read_out']} {r['ari']:.3f}" for r in rows if r["read_out"] in
                          ("centres_s4", "merge5_s0")),
            )  # fmt: skip


def ablation_checkpoint(cache: Path, name: str, seed: int, setting: str) -> Path:
    return cache / "ablations" / f"{name}.seed{seed}.{setting}.pt"


def ablate(settings, datasets, seeds, cache: Path, default: str) -> str:
    """Fit each setting of ``ABLATIONS`` the cache lacks (true k), score it with the read-out ``default``
    where not yet scored, and table it beside the same read-out of the cached default models (``train
    --k true`` first). The fitted models are kept in ``--cache``, so another read-out refits nothing."""
    from scdefr.model import SCDEFR

    path = RESULTS_DIR / ABLATIONS_FILE
    done = set()
    if path.exists():
        done = set(pd.read_csv(path)[["dataset", "seed", "setting", "read_out"]].itertuples(index=False, name=None))
    for name in datasets:
        for seed in seeds:
            missing = [setting for setting in settings if (name, seed, setting, default) not in done]
            if missing:
                adata, truth = graph_input(name, seed, cache)
            for setting in missing:
                fitted = ablation_checkpoint(cache, name, seed, setting)
                seconds = ""
                if fitted.exists():
                    model = SCDEFR.load(fitted, adata)
                else:
                    with stopwatch() as timing:
                        model = SCDEFR(adata, len(set(truth)), seed=seed, **ABLATIONS[setting]).fit()
                    seconds = round(timing["seconds"], 1)
                    fitted.parent.mkdir(parents=True, exist_ok=True)
                    model.save(fitted)
                model.clusters = dataclasses.replace(model.clusters, **READOUTS[default])
                _, _, clusters = model.predict()
                row = {"dataset": name, "seed": seed, "setting": setting, "read_out": default,
                       "K": len(set(truth)), "n_clusters": len(clusters.categories),
                       "fit_s": seconds, **score(truth, np.asarray(clusters))}  # fmt: skip
                append_rows(ABLATIONS_FILE, [row])
                logger.info("%s seed %d %s: ARI %.3f (%s)", name, seed, setting, row["ari"], default)
    return ablation_report(default, datasets, seeds, settings)


def ablation_report(default: str, datasets, seeds, settings=tuple(ABLATIONS)) -> str:
    """Each of ``settings``' ARI minus the default's of the same dataset and seed, per dataset (the mean
    over the seeds it was fitted at); the default column is the mean over the seeds any of them has."""
    ablations = pd.read_csv(RESULTS_DIR / ABLATIONS_FILE)
    scores = pd.read_csv(RESULTS_DIR / SCORES_FILE)
    scores = scores[(scores["k_mode"] == "true") & (scores["read_out"] == default)]
    base = scores.drop_duplicates(["dataset", "seed"], keep="last").set_index(["dataset", "seed"])["ari"]
    wanted = (
        (ablations["read_out"] == default)
        & ablations["dataset"].isin(datasets)
        & ablations["seed"].isin(seeds)
        & ablations["setting"].isin(settings)
    )
    runs = ablations[wanted].drop_duplicates(["dataset", "seed", "setting"], keep="last")
    default_of_run = base.reindex(pd.MultiIndex.from_frame(runs[["dataset", "seed"]])).to_numpy()
    runs = runs.assign(change=runs["ari"].to_numpy() - default_of_run).dropna(subset=["change"])
    deltas = runs.pivot_table(index="dataset", columns="setting", values="change", aggfunc="mean")
    tabled = [setting for setting in settings if setting in deltas]  # those with runs, in the order asked
    deltas = deltas.reindex([name for name in datasets if name in deltas.index])[tabled]
    fitted = runs.drop_duplicates(["dataset", "seed"]).set_index(["dataset", "seed"]).index
    defaults = base.reindex(fitted).groupby(level="dataset").mean()
    seeds_of = runs.groupby("dataset")["seed"].unique()
    header = ["dataset", "seeds", f"default ({default})", *(f"{setting} - default" for setting in tabled)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in deltas.index:
        changes = (f"{deltas.loc[name, s]:+.3f}" if pd.notna(deltas.loc[name, s]) else "-" for s in tabled)
        seeds_fitted = ", ".join(map(str, sorted(seeds_of[name])))
        lines.append("| " + " | ".join([name, seeds_fitted, f"{defaults[name]:.3f}", *changes]) + " |")
    mean_changes = (f"{deltas[s].mean():+.3f}" for s in tabled)
    lines.append("| " + " | ".join(["mean", "", f"{defaults[deltas.index].mean():.3f}", *mean_changes]) + " |")
    return "\n".join(lines)


def consensus(members: list[np.ndarray], n_clusters: int, seed: int) -> dict[str, np.ndarray]:
    """Two consensus clusterings of a seed ensemble: the majority vote after matching each member's
    clusters to the first's (Hungarian), and KMeans of the members' one-hot assignments side by side,
    whose squared distance between two cells is twice the number of members that split them."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    matched = [members[0]]
    for labels in members[1:]:
        overlap = np.zeros((n_clusters, n_clusters))
        np.add.at(overlap, (labels, members[0]), 1)
        rows, cols = linear_sum_assignment(-overlap)
        matched.append(cols[np.argsort(rows)][labels])
    votes = np.stack([np.bincount(cell, minlength=n_clusters) for cell in np.stack(matched, axis=1)])
    one_hot = np.hstack([np.eye(n_clusters)[labels] for labels in members])
    return {
        "vote": votes.argmax(axis=1),
        "coassignment_kmeans": KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(one_hot),
    }


def ensemble(datasets, seeds, cache: Path, default: str) -> str:
    """Score the consensus of the cached true-k models of ``seeds`` (one ensemble per dataset) against
    their single runs, all read out with ``default``."""
    from scdefr.model import SCDEFR

    lines = ["| dataset | single runs (mean) | vote | coassignment_kmeans |", "|---|---|---|---|"]
    for name in datasets:
        members, truth = [], None
        for seed in seeds:
            adata, truth = graph_input(name, seed, cache)
            model = SCDEFR.load(checkpoint_path(cache, name, seed, "true"), adata)
            model.clusters = dataclasses.replace(model.clusters, **READOUTS[default])
            members.append(np.asarray(model.predict()[2]).astype(int))
        n_clusters = len(set(truth))
        singles = np.mean([score(truth, labels)["ari"] for labels in members])
        found = consensus(members, n_clusters, seeds[0])
        cells = [f"{score(truth, labels)['ari']:.3f}" + ("" if len(set(labels)) == n_clusters else
                 f" ({len(set(labels))} of {n_clusters} clusters)") for labels in found.values()]  # fmt: skip
        lines.append(f"| {name} | {singles:.3f} | " + " | ".join(cells) + " |")
        logger.info("%s", lines[-1])
    return "\n".join(lines)


def pretrained_embedding(adata, name: str, seed: int, cache: Path) -> np.ndarray:
    """The pre-trained embedding of the cached ``auto`` model (the one its centres started from), or
    of a pre-training run if none is cached."""
    from scdefr.model import SCDEFR

    if checkpoint_path(cache, name, seed, "auto").exists():
        return SCDEFR.load(checkpoint_path(cache, name, seed, "auto"), adata).state.pretrained_embedding
    _, plan = pretrain(adata, seed, "auto")
    return plan.embed().z.float().cpu().numpy()


def resolutions(datasets, seeds, cache: Path, default: str) -> str:
    """Score each of ``LEIDEN_RESOLUTIONS`` for ``--n-clusters auto`` on the pre-trained embedding of each
    (dataset, seed), and choose one by leaving one dataset out.

    The K a resolution gives decides the joint phase, so scoring the finished model at every K would
    train once per K; the score here is the ``default`` read-out of the pre-trained embedding at that
    K (a proxy: the final model is scored by ``train --k auto`` with the resolution shipped). The
    pre-trained embeddings are cached (:func:`pretrained_embedding`)."""
    from scdefr.clustering import estimate_n_clusters
    from scdefr.readout import split_and_merge

    path = RESULTS_DIR / RESOLUTIONS_FILE
    done = set(pd.read_csv(path)[["dataset", "seed"]].itertuples(index=False, name=None)) if path.exists() else set()
    read_out = READOUTS[default]
    for name in datasets:
        for seed in seeds:
            if (name, seed) in done:
                continue
            adata, truth = graph_input(name, seed, cache)
            k_true = len(set(truth))
            embedding_file = cache / "pretrained" / f"{name}.seed{seed}.npy"
            if not embedding_file.exists():
                embedding_file.parent.mkdir(parents=True, exist_ok=True)
                partial = embedding_file.with_suffix(".partial.npy")  # an interrupted write is never read back
                np.save(partial, pretrained_embedding(adata, name, seed, cache))
                partial.replace(embedding_file)
            embedding = np.load(embedding_file)
            chosen = {r: estimate_n_clusters(embedding, resolution=r, seed=seed)[0] for r in LEIDEN_RESOLUTIONS}
            scored = {}
            for k in {*chosen.values(), k_true}:
                labels = split_and_merge(
                    embedding, adata.obsp["scdefr_adjacency"], k, factor=read_out["merge_factor"], seed=seed,
                    restarts=read_out["merge_restarts"],
                )  # fmt: skip
                scored[k] = score(truth, labels)["ari"]
            append_rows(RESOLUTIONS_FILE, [
                {"dataset": name, "seed": seed, "resolution": r, "K": k, "k_true": k_true, "ari": scored[k],
                 "ari_true_k": scored[k_true]}
                for r, k in chosen.items()
            ])  # fmt: skip
            logger.info("%s seed %d: K %s (true %d)", name, seed, chosen, k_true)
    # every set recorded, not only those given: a set added is left out among the others
    return resolution_report(list(dict.fromkeys([*ALL_DATASETS, *datasets])), seeds)


def resolution_report(datasets, seeds) -> str:
    """K at each resolution (mean over the seeds), and the resolution chosen on the other datasets with its
    proxy ARI."""
    rows = pd.read_csv(RESULTS_DIR / RESOLUTIONS_FILE)
    rows = rows[rows["dataset"].isin(datasets) & rows["seed"].isin(seeds)]
    rows = rows.drop_duplicates(["dataset", "seed", "resolution"], keep="last")
    names = [name for name in datasets if name in set(rows["dataset"])]
    chosen = leave_one_out(rows.assign(read_out=rows["resolution"].map(lambda r: f"r{r:g}")), names)
    k_mean = rows.pivot_table(index="dataset", columns="resolution", values="K", aggfunc="mean")
    header = ["dataset", "true k", *(f"K at r = {r:g}" for r in k_mean.columns), "chosen on the others",
              "its ARI (proxy)", "ARI at true k (proxy)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        own = rows[rows["dataset"] == name]
        lines.append("| " + " | ".join([
            name, str(own["k_true"].iloc[0]), *(f"{k:.3g}" for k in k_mean.loc[name]), chosen.loc[name, "read_out"],
            f"{chosen.loc[name, 'ari']:.3f}", f"{own['ari_true_k'].mean():.3f}",
        ]) + " |")  # fmt: skip
    overall = rows.groupby(["resolution", "dataset"])["ari"].mean().groupby("resolution").mean()
    lines.append("\nMean proxy ARI over the datasets: " + ", ".join(f"r = {r:g} {v:.3f}" for r, v in overall.items()))
    return "\n".join(lines)


# --- files no default was chosen on ----------------------------------------------------------------


def unseen(files: list[Path], label_key: str, seeds, cache: Path, default: str) -> str:
    """The shipped default (true k and ``auto``) and the three baselines on labelled files outside the
    protocol's datasets, so outside every choice; the table compares them, nothing is chosen."""
    from scdefr import io
    from scdefr.model import SCDEFR

    names = [path.name.split(".")[0] for path in files]  # the file name without its extensions
    for name, path in zip(names, files, strict=True):
        done = _unseen_done(name)
        for seed in (seed for seed in seeds if seed not in done):
            adata, truth = graph_input(name, seed, cache, path, label_key)
            wanted = {"true": len(set(truth)), "auto": "auto"}
            missing = {mode: k for mode, k in wanted.items() if not checkpoint_path(cache, name, seed, mode).exists()}
            for mode, (model, _) in (fit_sharing_pretraining(adata, seed, missing) if missing else {}).items():
                checkpoint_path(cache, name, seed, mode).parent.mkdir(parents=True, exist_ok=True)
                model.save(checkpoint_path(cache, name, seed, mode))
            found = {}
            for mode in wanted:
                model = SCDEFR.load(checkpoint_path(cache, name, seed, mode), adata)
                model.clusters = dataclasses.replace(model.clusters, **READOUTS[default])
                found[f"scdefr_{mode}"] = np.asarray(model.predict()[2])
            counts = io.read_counts(path)
            found.update(scanpy_baselines(counts, len(set(truth)), seed))
            rows = [{"dataset": name, "seed": seed, "method": method, "n_clusters": len(set(labels)),
                     **score(truth, labels)} for method, labels in found.items()]  # fmt: skip
            append_rows(UNSEEN_FILE, rows)
            logger.info("%s seed %d: %s", name, seed, ", ".join(f"{r['method']} {r['ari']:.3f}" for r in rows))
    return unseen_report(names, seeds)


def _unseen_done(name: str) -> set[int]:
    if not (RESULTS_DIR / UNSEEN_FILE).exists():
        return set()
    rows = pd.read_csv(RESULTS_DIR / UNSEEN_FILE)
    return set(rows.loc[rows["dataset"] == name, "seed"])


def unseen_report(names, seeds) -> str:
    """scDEFR at the true k and ``auto`` beside the baselines, mean ± sd over ``seeds``; the margin is
    the true-k score against the best baseline."""
    rows = pd.read_csv(RESULTS_DIR / UNSEEN_FILE)
    stats = rows[rows["seed"].isin(seeds)].groupby(["dataset", "method"])[["ari", "n_clusters"]].agg(["mean", "std"])
    methods = ("scdefr_true", "scdefr_auto", *BASELINES)
    lines = ["| dataset | " + " | ".join(methods) + " | true k - best baseline |", "|" + "---|" * (len(methods) + 2)]
    for name in names:
        cells = [f"{fmt(*stats.loc[(name, m), 'ari'])} ({stats.loc[(name, m), ('n_clusters', 'mean')]:.3g})"
                 for m in methods]  # fmt: skip
        margin = stats.loc[(name, "scdefr_true"), ("ari", "mean")] - max(
            stats.loc[(name, m), ("ari", "mean")] for m in BASELINES
        )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {margin:+.3f} |")
    return "\n".join(lines) + "\n\nARI, mean ± sd over seeds " + ", ".join(map(str, seeds)) + " (clusters found)."


# --- leave one dataset out ------------------------------------------------------------------------


def leave_one_out(scores: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """For each dataset, the candidate with the best mean ARI over the others (each the mean over its
    seeds) and that candidate's ARI on the dataset left out. Only candidates scored on every dataset
    compete, so none wins by missing a hard one; nor does one that left a requested cluster empty in
    any run (a user who asks for K clusters gets K)."""
    if {"K", "n_clusters"} <= set(scores):
        emptied = scores.loc[scores["n_clusters"] < scores["K"], "read_out"].unique()
        scores = scores[~scores["read_out"].isin(emptied)]
    per_dataset = scores.groupby(["read_out", "dataset"])["ari"].agg(["mean", "std"])
    means = per_dataset["mean"].unstack("dataset").reindex(columns=datasets).dropna()
    rows = []
    for held_out in datasets:
        others = [name for name in datasets if name != held_out]
        chosen = means[others].mean(axis=1).idxmax()
        stats = per_dataset.loc[(chosen, held_out)]
        rows.append({"dataset": held_out, "read_out": chosen, "ari": stats["mean"], "sd": stats["std"]})
    return pd.DataFrame(rows).set_index("dataset")


def fmt(mean: float, sd: float) -> str:
    return f"{mean:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{mean:.3f}"


def lodo_report(default: str, previous: str) -> str:
    """The left-out table (true k) with the shipped default's true-k and auto scores, and the previous
    default's true-k score, beside it."""
    scores = pd.read_csv(RESULTS_DIR / SCORES_FILE)
    scores = scores[scores["seed"].isin(SEEDS)].drop_duplicates(["dataset", "seed", "k_mode", "read_out"], keep="last")
    true_k, auto = scores[scores["k_mode"] == "true"], scores[scores["k_mode"] == "auto"]
    datasets = [name for name in ALL_DATASETS if name in set(true_k["dataset"])]
    chosen = leave_one_out(true_k, datasets)
    bases = pd.read_csv(RESULTS_DIR / BASELINES_FILE)
    bases = bases[bases["seed"].isin(SEEDS)].groupby(["dataset", "method"])["ari"].agg(["mean", "std"])
    header = ["dataset", "left-out ARI (true k)", "chosen on the others", f"{default} (true k)",
              f"{default} (auto)", f"{previous} (true k)", *BASELINES, "left-out - target"]  # fmt: skip
    lines, margins = [], []
    for name in datasets:
        row = chosen.loc[name]
        target = max(bases.loc[(name, method), "mean"] for method in BASELINES)
        margins.append(row["ari"] - target)
        shipped = [frame[(frame["dataset"] == name) & (frame["read_out"] == read_out)]["ari"]
                   for frame, read_out in ((true_k, default), (auto, default), (true_k, previous))]  # fmt: skip
        lines.append([
            name, fmt(row["ari"], row["sd"]), row["read_out"],
            *(fmt(values.mean(), values.std()) if len(values) else "-" for values in shipped),
            *(fmt(*bases.loc[(name, method)]) for method in BASELINES), f"{row['ari'] - target:+.3f}",
        ])  # fmt: skip
    text = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(cells) + " |" for cells in lines]
    text.append(
        f"\nAbove the target on {sum(m > 0 for m in margins)} of {len(margins)}; mean margin "
        f"{np.mean(margins):+.3f}; {len(READOUTS)} candidates; seeds {', '.join(map(str, SEEDS))}."
    )
    return "\n".join(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "command", choices=("baselines", "train", "lodo", "ablate", "ensemble", "resolutions", "unseen")
    )
    parser.add_argument("--datasets", nargs="+", default=list(ALL_DATASETS), choices=ALL_DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--k", nargs="+", choices=("true", "auto"), default=["true"], dest="k_modes")
    parser.add_argument("--cache", type=Path, default=Path("scdefr_protocol"), help="simulations and fitted models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--read-outs", nargs="+", default=list(READOUTS), choices=list(READOUTS), help="to score")
    parser.add_argument("--default", default="merge8_s0_r5_both", choices=list(READOUTS), help="the shipped read-out")
    parser.add_argument("--previous", default="merge8_s0_r5", choices=list(READOUTS), help="the read-out it replaced")
    parser.add_argument(
        "--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS), help="to fit and tabulate"
    )
    parser.add_argument("--files", nargs="+", type=Path, default=[], help="unseen: labelled counts files")
    parser.add_argument("--label-key", default=LABEL_KEY, help="unseen: the obs column of the labels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from scdefr import settings
    from scdefr.cli._common import limit_threads

    settings.progress = False
    limit_threads(args.threads)
    if args.command == "baselines":
        run_baselines(args.datasets, args.seeds, args.cache)
    elif args.command == "train":
        train(args.datasets, args.seeds, args.k_modes, args.cache, args.read_outs)
    elif args.command == "ablate":
        print(ablate(args.ablations, args.datasets, args.seeds, args.cache, args.default))
    elif args.command == "ensemble":
        print(ensemble(args.datasets, args.seeds, args.cache, args.default))
    elif args.command == "resolutions":
        read_out = READOUTS[args.default]
        if read_out["readout"] != "merge" or read_out["smoothing_steps"]:
            parser.error(f"resolutions needs a merge read-out without smoothing as --default, not {args.default}")
        print(resolutions(args.datasets, args.seeds, args.cache, args.default))
    elif args.command == "unseen":
        if not args.files:
            parser.error("unseen needs --files")
        print(unseen(args.files, args.label_key, args.seeds, args.cache, args.default))
    else:
        print(lodo_report(args.default, args.previous))


if __name__ == "__main__":
    main()
