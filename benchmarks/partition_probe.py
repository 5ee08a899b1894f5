"""The pre-trained embedding, scored by how partitions of it match the annotated types: a diagnostic.

The joint phase refines the centres it starts from: on pbmc_10x, KMeans on the pre-trained z
scored 0.765 and the final argmax Q 0.760 (BENCHMARKS.md, round 3). So the partition that seeds
the centres, and the embedding it partitions, bound the result, and both can be screened at the
cost of pre-training alone. This script pre-trains once per dataset, seed and network variant
(``--hidden-dims``, ``--hops``, ``--input-scaling``, ``--input-noise``, ``--zinb-form``; the rest are the package defaults), caches
z, and scores partitions of it with the true number of types: KMeans (the package's choice), Ward
linkage, a Gaussian mixture, and Leiden on the kNN graph of z with its resolution bisected to the
true k. The same partitions of the PCA embedding are the reference. ``--consensus`` also pools
each dataset's seeds; ``--more-epochs N [--regraph]`` pre-trains N epochs more, on the kNN graph
of the pre-trained z with ``--regraph``. Labels only score; the true k is what ``--n-clusters``
would hand the model.

    python benchmarks/partition_probe.py --datasets mouse_bladder_2100 paul15 --seeds 0 1 2 --cache Z
    python benchmarks/partition_probe.py --hops 5 --methods kmeans --seeds 0 1 --cache Z --tag v8_hops5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import DATASETS, LABEL_KEY, SEEDS, append_rows, score
import baselines
from scdefr.config import DEFAULT_HIDDEN_DIMS, DEFAULT_INPUT_SCALING, INPUT_SCALINGS, ZINB_FORMS

RESULTS_FILE = "partition_probe.csv"


def pretrained_embedding(adata, seed: int, threads: int, hidden_dims: list[int], input_scaling: str,
                         hops: int, more_epochs: int = 0, regraph: bool = False,
                         input_noise: float = 0.0, zinb_form: str = "counts") -> np.ndarray:
    """z after the default pre-training schedule (no centres, no labels), then ``more_epochs`` more;
    with ``regraph`` those run on the kNN graph of the pre-trained z instead of the PCA's."""
    import torch
    from sklearn.neighbors import kneighbors_graph

    from scdefr.nn import SCDEFRModule
    from scdefr.pp._graph import normalized_adjacency
    from scdefr.training import CellGraph, TrainingConfig, TrainingPlan, partition_cells

    torch.set_num_threads(threads)
    graph = CellGraph.from_anndata(adata, zinb_form=zinb_form, input_scaling=input_scaling)
    torch.manual_seed(seed)
    module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=hidden_dims, hops=hops, zinb_form=zinb_form)
    config = TrainingConfig(seed=seed, input_noise=input_noise)
    plan = TrainingPlan(module, graph, config, lambda embedding: (0, {}))
    epochs = plan.pretrain_epochs  # the automatic schedule the package would use
    plan._run_phase("pretrain", epochs)
    if regraph:
        n_neighbors = adata.uns["scdefr_graph"]["params"]["n_neighbors"]
        knn = kneighbors_graph(plan.embed()[0], n_neighbors=n_neighbors - 1, include_self=False)
        graph.adjacency = normalized_adjacency(knn)
        plan._full_batch = None
        plan.parts = partition_cells(graph, plan.batch_size, seed) if plan.batch_size else None
    plan._run_phase("pretrain", epochs + more_epochs)
    return plan.embed()[0]


def leiden_at_k(embedding: np.ndarray, k: int, seed: int, n_neighbors: int = 15) -> np.ndarray:
    """Leiden on the symmetrised kNN graph of ``embedding``, resolution bisected to k communities
    as the ``leiden_true_k`` baseline does on the PCA graph."""
    import anndata
    from sklearn.neighbors import kneighbors_graph

    knn = kneighbors_graph(embedding, n_neighbors=n_neighbors, include_self=False)
    holder = anndata.AnnData(np.zeros((embedding.shape[0], 1), dtype=np.float32))
    return baselines.leiden_at_k(holder, k, seed, adjacency=knn.maximum(knn.T))[0]


def partition(method: str, embedding: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        return KMeans(k, n_init=20, random_state=seed).fit_predict(embedding)
    if method == "ward":
        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(embedding)
    if method == "gmm":
        return GaussianMixture(k, covariance_type="full", n_init=3, random_state=seed).fit(embedding).predict(embedding)
    return leiden_at_k(embedding, k, seed)


METHODS = ("kmeans", "ward", "gmm", "leiden_k")


def consensus_partitions(embeddings: list[np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Two ways to pool runs with different seeds: KMeans on their embeddings side by side (each
    centred and scaled to unit overall spread), and average linkage on how often the runs' own
    KMeans partitions put two cells together (memory: cells^2 floats)."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    side_by_side = np.hstack([(z - z.mean(axis=0)) / z.std() for z in embeddings])
    singles = [KMeans(k, n_init=20, random_state=seed).fit_predict(z) for seed, z in enumerate(embeddings)]
    together = sum((labels[:, None] == labels[None, :]).astype(np.float32) for labels in singles) / len(singles)
    linkage = AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average")
    return {
        "kmeans_side_by_side": KMeans(k, n_init=20, random_state=0).fit_predict(side_by_side),
        "coassociation": linkage.fit_predict(1.0 - together),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--cache", type=Path, required=True, help="folder for the pre-trained embeddings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden-dims", default=None, help="e.g. 256,64,32 (default: the package's)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--hops", type=int, default=3, help="TAGConv hops per graph layer (the package's default: 3)")
    parser.add_argument("--input-scaling", choices=INPUT_SCALINGS, default=DEFAULT_INPUT_SCALING,
                        help="what the encoders see of X")
    parser.add_argument("--input-noise", type=float, default=0.0,
                        help="sd of Gaussian noise on the encoders' input in pre-training (the package's default: 0)")
    parser.add_argument("--zinb-form", choices=ZINB_FORMS, default=ZINB_FORMS[0],
                        help="what the ZINB decoder reconstructs (the package's default: counts)")
    parser.add_argument("--more-epochs", type=int, default=0, help="pre-training epochs after the default schedule")
    parser.add_argument("--regraph", action="store_true",
                        help="run the --more-epochs on the kNN graph of the pre-trained z (same neighbours)")
    parser.add_argument("--consensus", action="store_true",
                        help="also pool each dataset's seeds (see consensus_partitions); costs a training per seed")
    parser.add_argument("--tag", default="v8_partition")
    args = parser.parse_args(argv)

    hidden = [int(w) for w in args.hidden_dims.split(",")] if args.hidden_dims else list(DEFAULT_HIDDEN_DIMS)
    widths = "-".join(map(str, hidden))
    variant = widths if args.input_scaling == DEFAULT_INPUT_SCALING else f"{widths}.{args.input_scaling}"
    variant += "" if args.hops == 3 else f".hops{args.hops}"
    variant += f".noise{args.input_noise:g}" if args.input_noise else ""
    variant += "" if args.zinb_form == ZINB_FORMS[0] else f".zinb_{args.zinb_form}"
    variant += f".{'regraph' if args.regraph else 'more'}{args.more_epochs}" if args.more_epochs else ""
    args.cache.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        pretrained = []
        for seed in args.seeds:
            adata = baselines.preprocess(name, seed)
            truth = adata.obs[LABEL_KEY].astype(str).to_numpy()
            k = len(set(truth))
            cached = args.cache / f"{name}.seed{seed}.{variant}.npy"
            if not cached.exists():
                started = time.perf_counter()
                z = pretrained_embedding(adata, seed, args.threads, hidden, args.input_scaling, args.hops,
                                         args.more_epochs, args.regraph, args.input_noise, args.zinb_form)
                np.save(cached, z)
                print(f"{name} seed {seed}: pre-trained in {time.perf_counter() - started:.0f} s", flush=True)
            pretrained.append(np.load(cached))
            spaces = {"z_pretrain": pretrained[-1], "pca": adata.obsm["X_pca"]}
            rows = []
            for space, embedding in spaces.items():
                for method in args.methods:
                    labels = partition(method, embedding, k, seed)
                    rows.append({"tag": args.tag, "dataset": name, "seed": seed, "variant": variant,
                                 "space": space, "method": method, "n_found": len(set(labels)),
                                 **score(truth, labels)})
                    print(name, seed, space, method, round(rows[-1]["ari"], 3), flush=True)
            append_rows(RESULTS_FILE, rows)
        if args.consensus and len(pretrained) > 1:
            seeds = "+".join(map(str, args.seeds))
            rows = [{"tag": args.tag, "dataset": name, "seed": seeds, "variant": variant, "space": "z_pretrain",
                     "method": method, "n_found": len(set(labels)), **score(truth, labels)}
                    for method, labels in consensus_partitions(pretrained, k).items()]
            for row in rows:
                print(name, seeds, row["method"], round(row["ari"], 3), flush=True)
            append_rows(RESULTS_FILE, rows)


if __name__ == "__main__":
    main()
