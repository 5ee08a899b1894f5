"""How the final labels are read off a trained model: the measurement behind ``--smoothing-steps``.

This script trains once per dataset and seed (package defaults, true k or ``--k auto``,
``smoothing_steps=0``), caches z and Q, and scores label-free rules that read the same trained
model: the argmax of Q (DEC's read-out), Q averaged over t random-walk steps of the cell
graph (``tl.smooth_assignments``, what the package does), Q propagated t times with the graph
step's symmetric adjacency, KMeans on z, and Leiden on the kNN graph of z with its resolution
bisected to the model's K. Labels only score; the true k is what
``--n-clusters`` would hand the model.

    python benchmarks/label_rules.py --datasets mouse_bladder_2100 paul15 --seeds 0 1 --cache Q
    python benchmarks/label_rules.py --param lr=0.001 --cache Q --tag joint_lr_1e-3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import baselines
import numpy as np
from _common import DATASETS, LABEL_KEY, SEEDS, append_rows, score
from scdefr_quality import parse_params

RESULTS_FILE = "label_rules.csv"
SMOOTHING_STEPS = (1, 2, 4, 8, 16)


def trained(name: str, seed: int, threads: int, cache: Path, k_mode: str = "true", params: dict | None = None):
    """(graph AnnData, its labels, z, Q) for one dataset and seed; trains once, with labels removed.
    ``k_mode`` 'true' hands the model the number of types, 'auto' lets it estimate K; ``params`` go to
    ``tl.scdefr``. The cache file is named by all three, so a folder never hands back a model trained
    with other settings."""
    import torch

    from scdefr import tl
    from scdefr._files.atomic import atomic_path

    adata = baselines.preprocess(name, seed)
    truth = adata.obs[LABEL_KEY].to_numpy()
    settings = ([] if k_mode == "true" else [k_mode]) + [
        f"{key}={value}" for key, value in sorted((params or {}).items())
    ]
    path = cache / ".".join([name, f"seed{seed}", *settings, "npz"])
    if not path.exists():
        torch.set_num_threads(threads)
        view = adata.copy()
        del view.obs[LABEL_KEY]
        n_clusters = len(set(truth)) if k_mode == "true" else "auto"
        tl.scdefr(view, n_clusters=n_clusters, seed=seed, **{**(params or {}), "smoothing_steps": 0})
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # an interrupted run leaves no cache
            np.savez(handle, z=view.obsm["X_scdefr"], q=view.obsm["scdefr_soft"])
    saved = np.load(path)
    return adata, truth, saved["z"], saved["q"]


def symmetric_smoothing(q: np.ndarray, adjacency, steps: int) -> np.ndarray:
    """``A^steps Q`` with the graph step's ``D^-1/2 (A + I) D^-1/2``: the propagation the encoders use."""
    for _ in range(steps):
        q = adjacency @ q
    return np.asarray(q)


def rules(adata, z: np.ndarray, q: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Labels of each rule: ``argmax_q`` (DEC's), ``q_walk{t}`` (the package's
    ``tl.smooth_assignments``), ``q_sym{t}`` (the symmetric propagation), ``kmeans_z``, ``leiden_z_k``."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import kneighbors_graph

    from scdefr import tl

    k = q.shape[1]
    found = {"argmax_q": q.argmax(axis=1)}
    adjacency = adata.obsp["scdefr_adjacency"]
    for steps in SMOOTHING_STEPS:
        found[f"q_sym{steps}"] = symmetric_smoothing(q, adjacency, steps).argmax(axis=1)
        found[f"q_walk{steps}"] = tl.smooth_assignments(q, adjacency, steps).argmax(axis=1)
    found["kmeans_z"] = KMeans(n_clusters=k, n_init=20, random_state=seed).fit_predict(z)
    knn = kneighbors_graph(z, n_neighbors=14, include_self=False)
    labels, _, _ = baselines.leiden_at_k(adata, k, seed, adjacency=knn.maximum(knn.T))
    found["leiden_z_k"] = labels
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--cache", type=Path, required=True, help="folder for the trained z and Q")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--k",
        choices=("true", "auto"),
        default="true",
        dest="k_mode",
        help="train with the true number of types, or let the model estimate K",
    )
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE keyword for scdefr.tl.scdefr")
    parser.add_argument("--tag", default="v13_label_rules")
    args = parser.parse_args(argv)
    for name in args.datasets:
        for seed in args.seeds:
            adata, truth, z, q = trained(name, seed, args.threads, args.cache, args.k_mode, parse_params(args.param))
            rows = []
            for rule, labels in rules(adata, z, q, seed).items():
                row = {
                    "tag": args.tag,
                    "dataset": name,
                    "seed": seed,
                    "k_mode": args.k_mode,
                    "rule": rule,
                    "n_clusters": len(set(labels)),
                    **score(truth, labels),
                }
                rows.append(row)
                print(
                    f"{name} seed {seed} {rule}: ARI {row['ari']:.3f} NMI {row['nmi']:.3f} ({row['n_clusters']})",
                    flush=True,
                )
            append_rows(RESULTS_FILE, rows)


if __name__ == "__main__":
    main()
