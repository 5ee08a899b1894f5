"""Seconds of the export's UMAP, fitted on every cell or on a subsample, and what the layout keeps.

A seeded UMAP lays cells out on one thread (scanpy passes its seed to umap-learn, which then runs
serially), so its time grows with the cells whatever the machine. `scdefr.export.add_umap` fits at
most `--umap-max-cells` cells and places the others among their nearest fitted cells. This script
times both on the embedding of a trained file:

- sizes up to the file's cells use a random subset of its cells; larger sizes stack copies of its
  cells with noise of 2% of the embedding's sd (for timing only: a copy's nearest cells are its
  twins, so no quality is scored there);
- on real cells it scores the layout: of the 15 nearest cells of 2,000 sampled cells in the
  embedding, the share that are also among their 15 nearest in the UMAP (`kept_neighbours`), and
  the share of their 15 nearest in the UMAP that share their scDEFR cluster (`same_cluster`).

    python benchmarks/umap_cost.py T.trained.h5ad --sizes 98714 200000 1000000 --limits 0 100000 25000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import append_rows

RESULTS_FILE = "umap_cost.csv"
SCORED_CELLS = 2000
SCORED_NEIGHBOURS = 15


def cells_of_size(embedding: np.ndarray, n_cells: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """``n_cells`` rows of ``embedding`` (a subset), or stacked noisy copies when it has fewer; the
    row each came from; and whether the rows are real cells."""
    rng = np.random.default_rng(seed)
    if n_cells <= len(embedding):
        source = np.sort(rng.choice(len(embedding), n_cells, replace=False))
        return embedding[source], source, True
    copies = [embedding] + [
        embedding + rng.normal(0, 0.02 * embedding.std(), embedding.shape).astype(np.float32)
        for _ in range(-(-n_cells // len(embedding)) - 1)
    ]
    return np.concatenate(copies)[:n_cells], np.arange(n_cells) % len(embedding), False


def layout_scores(embedding: np.ndarray, layout: np.ndarray, clusters: np.ndarray, seed: int) -> dict:
    from sklearn.neighbors import NearestNeighbors

    sample = np.random.default_rng(seed).choice(len(embedding), min(SCORED_CELLS, len(embedding)), replace=False)
    k = SCORED_NEIGHBOURS + 1  # each sampled cell finds itself first
    _, near_z = NearestNeighbors(n_neighbors=k).fit(embedding).kneighbors(embedding[sample])
    _, near_u = NearestNeighbors(n_neighbors=k).fit(layout).kneighbors(layout[sample])
    kept = [len(set(a[1:]) & set(b[1:])) / SCORED_NEIGHBOURS for a, b in zip(near_z, near_u, strict=True)]
    same = (clusters[near_u[:, 1:]] == clusters[sample][:, None]).mean()
    return {"kept_neighbours": round(float(np.mean(kept)), 4), "same_cluster": round(float(same), 4)}


def main(argv=None):
    import anndata

    from scdefr.export import add_umap

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trained", help="a 'scdefr train' output (obsm['X_scdefr'], obs['scdefr_cluster'])")
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--limits", type=int, nargs="+", default=[0, 100_000], help="--umap-max-cells values (0: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tag", default="v10_umap_cost")
    args = parser.parse_args(argv)

    trained = anndata.read_h5ad(args.trained, backed="r")
    embedding = np.asarray(trained.obsm["X_scdefr"], dtype=np.float32)
    clusters = np.asarray(trained.obs["scdefr_cluster"].astype(str))
    for n_cells in args.sizes:
        for seed in args.seeds:
            rows, source, real = cells_of_size(embedding, n_cells, seed)
            for limit in args.limits:
                if limit and limit >= n_cells:
                    continue  # the same as fitting every cell
                adata = anndata.AnnData(obsm={"X_scdefr": rows}, shape=(n_cells, 0))
                started = time.perf_counter()
                add_umap(adata, seed=seed, max_cells=limit)
                row = {
                    "tag": args.tag,
                    "input": args.trained,
                    "n_cells": n_cells,
                    "real_cells": real,
                    "umap_max_cells": limit,
                    "seed": seed,
                    "n_fitted": adata.uns["scdefr_umap"]["n_fitted"],
                    "umap_s": round(time.perf_counter() - started, 1),
                }
                if real:
                    row.update(layout_scores(rows, adata.obsm["X_umap"], clusters[source], seed))
                print(row, flush=True)
                append_rows(RESULTS_FILE, [row])


if __name__ == "__main__":
    main()
