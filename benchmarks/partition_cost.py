"""Time and locality of the Cluster-GCN partition, flat against two-level KMeans.

Mini-batch training cuts the cells into parts by KMeans on the PCA coordinates and trains on a
few parts at a time, so the kNN edges inside a batch are the ones it sees. A flat KMeans costs
cells x parts per iteration, quadratic in the cells; `scdefr.data_layer.partition_cells` switches
to two levels above `flat_max_parts`. For each input this script times both (forced through
that argument, whatever the size) and, for a
graph h5ad (output of ``scdefr graph``), reports the share of the kNN edges (self-loops left out)
that fall inside one part and inside one epoch's batches. ``--simulate N`` draws N cells of a
50-dimensional Gaussian mixture instead: time only, there is no graph.

    python benchmarks/partition_cost.py SWEEP/sim100000/graph/sim100000.graph.h5ad --simulate 200000 1000000
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
from _common import append_rows

from scdefr import data as data_layer

RESULTS_FILE = "partition_cost.csv"


def graph_input(path: str) -> SimpleNamespace:
    """What partition_cells reads (PCA coordinates, sizes) and the adjacency, without X."""
    import anndata

    adata = anndata.read_h5ad(path, backed="r")
    return SimpleNamespace(
        name=path,
        n_cells=adata.n_obs,
        n_genes=adata.n_vars,
        x=None,
        pca=np.asarray(adata.obsm["X_pca"], dtype=np.float32),
        adjacency=adata.obsp["scdefr_adjacency"][...].tocoo(),
    )


def simulated_input(n_cells: int, seed: int) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(20, 50))
    pca = (centres[rng.integers(0, 20, n_cells)] + rng.normal(size=(n_cells, 50))).astype(np.float32)
    return SimpleNamespace(name=f"simulated{n_cells}", n_cells=n_cells, n_genes=2000, x=None, pca=pca, adjacency=None)


def edges_kept(adjacency, part_of: np.ndarray) -> float:
    off_diagonal = adjacency.row != adjacency.col
    rows, cols = adjacency.row[off_diagonal], adjacency.col[off_diagonal]
    return float(np.mean(part_of[rows] == part_of[cols]))


def measure(data: SimpleNamespace, mode: str, batch_size: int, seed: int) -> dict:
    started = time.perf_counter()
    parts = data_layer.partition_cells(data, batch_size, seed, flat_max_parts=np.inf if mode == "flat" else 0)
    seconds = time.perf_counter() - started
    sizes = np.array([len(part) for part in parts])
    row = {
        "input": data.name,
        "n_cells": data.n_cells,
        "mode": mode,
        "seed": seed,
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "n_parts": len(parts),
        "smallest_part": int(sizes.min()),
        "median_part": int(np.median(sizes)),
        "largest_part": int(sizes.max()),
    }
    if data.adjacency is not None:
        part_of = np.empty(data.n_cells, dtype=np.int64)
        for index, part in enumerate(parts):
            part_of[part] = index
        order = np.random.default_rng(seed).permutation(len(parts))
        batch_of = np.empty(len(parts), dtype=np.int64)
        batch_of[order] = np.arange(len(parts)) // data_layer.PARTS_PER_BATCH  # as scdefr.data.batches groups them
        row.update(
            edges_in_part=round(edges_kept(data.adjacency, part_of), 4),
            edges_in_batch=round(edges_kept(data.adjacency, batch_of[part_of]), 4),
        )
    return row


def main(argv=None):
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graphs", nargs="*", help="h5ad files written by `scdefr graph`")
    parser.add_argument("--simulate", nargs="*", type=int, default=[], help="numbers of simulated cells")
    parser.add_argument("--modes", nargs="+", choices=("flat", "two_level"), default=["flat", "two_level"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--batch-size", type=int, default=data_layer.AUTO_BATCH_SIZE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="v9_partition_cost")
    args = parser.parse_args(argv)

    with threadpool_limits(args.threads):
        for seed in args.seeds:
            inputs = [graph_input(path) for path in args.graphs]
            inputs += [simulated_input(n, seed) for n in args.simulate]
            for data in inputs:
                for mode in args.modes:
                    row = {"tag": args.tag, "threads": args.threads, **measure(data, mode, args.batch_size, seed)}
                    print(row, flush=True)
                    append_rows(RESULTS_FILE, [row])


if __name__ == "__main__":
    main()
