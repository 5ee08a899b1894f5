"""Baselines on the shared labelled datasets: scanpy Leiden (default resolution, and resolution
bisected to the true number of types) and KMeans on the PCA embedding.

They see exactly the preprocessing scDEFR sees: the project's own ``scdefr.pp.qc`` and
``scdefr.pp.build_graph`` with their defaults (HVG, log1p, PCA, kNN graph). Labels are used to
score, and, for "Leiden at true k", only to know how many clusters to aim for - the same
information scDEFR gets with ``--n-clusters <true k>``.

    python benchmarks/baselines.py [--datasets pbmc_10x_top2000 ...] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import logging

from _common import DATASETS, LABEL_KEY, SEEDS, append_rows, dataset_path, score, stopwatch

logger = logging.getLogger("benchmarks.baselines")
RESULTS_FILE = "baselines.csv"


def preprocess(name: str, seed: int, qc: dict | None = None, graph: dict | None = None):
    """Counts -> the graph-step AnnData, through the same package functions `scdefr run` uses
    (``qc`` / ``graph``: keywords for ``pp.qc`` / ``pp.build_graph`` other than their defaults)."""
    from scdefr import io, pp

    adata = io.read_counts(dataset_path(name))
    adata = pp.qc(adata, **(qc or {}))
    pp.build_graph(adata, seed=seed, **(graph or {}))
    return adata


def leiden(adata, resolution: float, seed: int, adjacency=None) -> tuple[list, int]:
    """Leiden on ``obsp['connectivities']``, or on ``adjacency`` when given."""
    import scanpy as sc

    sc.tl.leiden(
        adata,
        resolution=resolution,
        random_state=seed,
        key_added="leiden",
        flavor="igraph",
        n_iterations=2,
        directed=False,
        adjacency=adjacency,
    )
    labels = adata.obs["leiden"].to_numpy()
    return labels, len(set(labels))


def leiden_at_k(adata, n_clusters: int, seed: int, max_steps: int = 30, adjacency=None) -> tuple[list, float, int]:
    """Bisection on the resolution until Leiden gives n_clusters (or the closest count seen)."""
    low, high = 0.0, 5.0
    best = None
    for _ in range(max_steps):
        resolution = (low + high) / 2
        labels, found = leiden(adata, resolution, seed, adjacency)
        if best is None or abs(found - n_clusters) < abs(best[2] - n_clusters):
            best = (labels, resolution, found)
        if found == n_clusters:
            break
        if found < n_clusters:
            low = resolution
        else:
            high = resolution
    return best


def kmeans_on_pca(adata, n_clusters: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters, n_init=20, random_state=seed).fit_predict(adata.obsm["X_pca"])


def run(datasets, seeds) -> list[dict]:
    rows = []
    for name in datasets:
        for seed in seeds:
            with stopwatch() as prep_time:
                adata = preprocess(name, seed)
            truth = adata.obs[LABEL_KEY].to_numpy()
            true_k = len(set(truth))
            common = {
                "dataset": name,
                "seed": seed,
                "n_cells": adata.n_obs,
                "n_genes": adata.n_vars,
                "true_k": true_k,
                "preprocess_s": round(prep_time["seconds"], 2),
            }
            found_rows = []
            with stopwatch() as t:
                labels, found = leiden(adata, 1.0, seed)
            found_rows.append(
                {
                    "method": "leiden_default",
                    "resolution": 1.0,
                    "n_clusters": found,
                    "seconds": t["seconds"],
                    **score(truth, labels),
                }
            )
            with stopwatch() as t:
                labels, resolution, found = leiden_at_k(adata, true_k, seed)
            found_rows.append(
                {
                    "method": "leiden_true_k",
                    "resolution": resolution,
                    "n_clusters": found,
                    "seconds": t["seconds"],
                    **score(truth, labels),
                }
            )
            with stopwatch() as t:
                labels = kmeans_on_pca(adata, true_k, seed)
            found_rows.append(
                {"method": "kmeans_pca", "n_clusters": true_k, "seconds": t["seconds"], **score(truth, labels)}
            )
            batch = [{**common, **row} for row in found_rows]
            append_rows(RESULTS_FILE, batch)
            for row in batch:
                logger.info(
                    "%s seed %d %s: k=%s ARI %.3f NMI %.3f ACC %.3f",
                    name,
                    seed,
                    row["method"],
                    row["n_clusters"],
                    row["ari"],
                    row["nmi"],
                    row["acc"],
                )
            rows.extend(batch)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args.datasets, args.seeds)


if __name__ == "__main__":
    main()
