"""scDEFR clustering quality on the shared labelled datasets, with the true number of types
(as the paper reports) and with ``n_clusters='auto'``.

Same preprocessing as the baselines (``baselines.preprocess``: the package's ``pp.qc`` and
``pp.build_graph`` defaults), then ``scdefr.tl.scdefr``. Labels are only used afterwards, to score,
and for the true-k runs to say how many clusters to ask for.

    python benchmarks/scdefr_quality.py --k true auto --datasets pbmc_10x_top2000 --seeds 0 1 2 \
        --param pretrain_epochs=200 --tag default

``--param name=value`` is passed to ``scdefr.tl.scdefr`` as a keyword (value read as a Python
literal when it is one), which is how the tuning grid varies learning rates, epochs, sigma, ...;
``--qc-param`` / ``--graph-param`` go to ``pp.qc`` / ``pp.build_graph`` (genes, neighbours).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging

from _common import DATASETS, LABEL_KEY, SEEDS, append_rows, score, stopwatch
from baselines import preprocess

logger = logging.getLogger("benchmarks.scdefr_quality")
RESULTS_FILE = "scdefr_quality.csv"


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        try:
            params[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            params[name] = text
    return params


def run_one(name: str, seed: int, k_mode: str, params: dict, tag: str, prep: dict) -> dict:
    from scdefr import tl

    adata = preprocess(name, seed, prep["qc"], prep["graph"])
    truth = adata.obs[LABEL_KEY].to_numpy()
    true_k = len(set(truth))
    training_view = adata.copy()
    del training_view.obs[LABEL_KEY]  # nothing downstream can even see the labels
    n_clusters = true_k if k_mode == "true" else "auto"
    with stopwatch() as t:
        tl.scdefr(training_view, n_clusters=n_clusters, seed=seed, **params)
    info = training_view.uns["scdefr"]
    labels = training_view.obs["scdefr_cluster"].to_numpy()
    # Diagnostic beside the model's own labels: KMeans on the final embedding with the model's K
    # (one of the two candidates the paper's code picks between with the labels).
    from sklearn.cluster import KMeans

    kmeans_labels = KMeans(n_clusters=len(set(labels)), n_init=20, random_state=seed).fit_predict(
        training_view.obsm["X_scdefr"]
    )
    kmeans_scores = {f"kmeans_z_{key}": value for key, value in score(truth, kmeans_labels).items()}
    row = {
        "tag": tag,
        "dataset": name,
        "seed": seed,
        "k_mode": k_mode,
        "true_k": true_k,
        "n_clusters": len(set(labels)),
        "n_cells": adata.n_obs,
        "train_s": round(t["seconds"], 1),
        "params": json.dumps({**params, **prep["qc"], **prep["graph"]}, sort_keys=True),
        **score(truth, labels),
        **kmeans_scores,
    }
    training = info["params"]["training"]
    row.update(
        pretrain_epochs=info["params"]["pretrain_epochs_used"],
        epochs=info["params"]["epochs_used"],
        lr_pretrain=training["lr_pretrain"],
        lr=training["lr"],
        final_pretrain_loss=float(info["history"]["pretrain"]["loss"][-1]),
        final_joint_loss=float(info["history"]["joint"]["loss"][-1]),
    )
    return row


def run(datasets, seeds, k_modes, params, tag, prep=None) -> list[dict]:
    prep = prep or {"qc": {}, "graph": {}}
    rows = []
    for name in datasets:
        for seed in seeds:
            for k_mode in k_modes:
                row = run_one(name, seed, k_mode, params, tag, prep)
                append_rows(RESULTS_FILE, [row])
                logger.info(
                    "[%s] %s seed %d k=%s(%d): ARI %.3f NMI %.3f ACC %.3f in %.0f s",
                    tag,
                    name,
                    seed,
                    k_mode,
                    row["n_clusters"],
                    row["ari"],
                    row["nmi"],
                    row["acc"],
                    row["train_s"],
                )
                rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--k", nargs="+", choices=("true", "auto"), default=["true", "auto"], dest="k_modes")
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE keyword for scdefr.tl.scdefr")
    parser.add_argument("--qc-param", action="append", default=[], help="NAME=VALUE keyword for scdefr.pp.qc")
    parser.add_argument(
        "--graph-param", action="append", default=[], help="NAME=VALUE keyword for scdefr.pp.build_graph"
    )
    parser.add_argument("--tag", default="default", help="label of this configuration in the results table")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    prep = {"qc": parse_params(args.qc_param), "graph": parse_params(args.graph_param)}
    run(args.datasets, args.seeds, args.k_modes, parse_params(args.param), args.tag, prep)


if __name__ == "__main__":
    main()
