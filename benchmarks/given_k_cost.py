"""What a run given K pays for counting the groups its pre-trained embedding forms (`compare_given_k`).

A run given ``--n-clusters K`` counts the Leiden communities of its pre-trained embedding, as ``auto``
would, to say when K is far from them. This times that count on a simulated 16-dimensional
embedding (the default latent size; a Gaussian mixture of 10 groups) at each size and seed.

    python benchmarks/given_k_cost.py --sizes 10000 100000 --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from _common import append_rows, stopwatch

from scdefr.clustering import compare_given_k

RESULTS_FILE = "given_k_cost.csv"


def mixture(n_cells: int, seed: int, n_groups: int = 10, dims: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_groups, dims))
    return (centres[rng.integers(0, n_groups, n_cells)] + rng.normal(size=(n_cells, dims))).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from scdefr.cli._common import limit_threads

    limit_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)  # the note on a given K far from the count is expected here
    compare_given_k(mixture(500, 0), 10, 0.5, 0)  # imports and first-call compilation, not timed
    for n_cells in args.sizes:
        for seed in args.seeds:
            embedding = mixture(n_cells, seed)
            with stopwatch() as timing:
                comparison = compare_given_k(embedding, 10, 0.5, seed)
            row = {"n_cells": n_cells, "seed": seed, "threads": args.threads, "seconds": round(timing["seconds"], 2),
                   "communities_counted": comparison["communities_counted"]}  # fmt: skip
            append_rows(RESULTS_FILE, [row])
            print(row, flush=True)


if __name__ == "__main__":
    main()
