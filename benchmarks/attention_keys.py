"""The global self-correlation over a subset of its keys: what it changes in z and the clusters, and its time.

The last step of the network, ``z = alpha * softmax(z z^T) z + z``, attends from every cell to every
cell: in a whole-graph pass its time is quadratic in the cells (about 2.5 min per pass at 200,000
cells on 2 cores). Above ``scdefr.nn.layers.ATTENTION_MAX_KEYS`` cells it now attends to
an evenly spaced subset of them. This script loads a trained model with its graph file and reads
the clusters as the package does (``SCDEFR.predict``: one whole-graph pass, Q averaged over the
graph), once per setting of ``--keys`` (0: every cell as a key, the reference; -1: without the term,
alpha = 0, to show what it is worth at all). Per setting it records the seconds of the term alone
and of the whole read-out, how far z moved from the reference (relative norm), the share of cells
whose cluster changed, the ARI between the two clusterings and, when ``--label-key`` is given, the
ARI against the labels (scoring only: the labels are removed before the model is loaded). With
``--orders N`` each subset setting runs N times: in the input's order, then with the cells
shuffled before the keys are taken (another subset; the spread over subsets).

    python benchmarks/attention_keys.py sim200k.graph.h5ad sim200k.model.pt \
        --keys 0 5000 10000 20000 50000 -1 --orders 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import append_rows

RESULTS_FILE = "attention_keys.csv"


def read_out(model, max_keys: int, order_seed: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """z, the clusters, the seconds of the attention term and of the whole read-out. With
    ``order_seed`` > 0 the cells are shuffled before the keys are taken, so another subset of them
    serves as keys (the output keeps the input's order)."""
    import torch

    from scdefr.nn import layers, module

    spent = [0.0]

    def timed(z):
        started = time.perf_counter()
        order = torch.arange(z.shape[0])
        if order_seed:
            order = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(order_seed))
        out = torch.empty_like(z)
        out[order] = layers.global_self_correlation(
            z[order], max_keys=z.shape[0] if max_keys == 0 else max(1, max_keys)
        )
        spent[0] += time.perf_counter() - started
        return out

    alpha = model.module.alpha.detach().clone()
    original = module.global_self_correlation
    module.global_self_correlation = timed
    try:
        if max_keys < 0:
            with torch.no_grad():
                model.module.alpha.zero_()
        started = time.perf_counter()
        embedding, _, clusters = model.predict()
        total = time.perf_counter() - started
    finally:
        module.global_self_correlation = original
        with torch.no_grad():
            model.module.alpha.copy_(alpha)
    return embedding, np.asarray(clusters.codes), spent[0], total


def main(argv=None):
    import anndata
    import torch
    from sklearn.metrics import adjusted_rand_score

    from scdefr.model import SCDEFR
    from scdefr.nn import layers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graph", help="the graph step's h5ad the model was trained on")
    parser.add_argument("checkpoint", help="the trained model (.model.pt)")
    parser.add_argument(
        "--keys",
        type=int,
        nargs="+",
        default=[0, 5000, 10000, layers.ATTENTION_MAX_KEYS, 50000, -1],
        help="keys per setting: 0 every cell (the reference, run first), -1 without the term",
    )
    parser.add_argument("--label-key", default=None, help="obs column to score against (removed before loading)")
    parser.add_argument(
        "--orders",
        type=int,
        default=1,
        help="subsets of keys per setting: the input's order, then orders-1 shuffled orders",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="attention_keys")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    adata = anndata.read_h5ad(args.graph)
    labels = adata.obs.pop(args.label_key).to_numpy() if args.label_key else None
    model = SCDEFR.load(args.checkpoint, adata)
    settings = [0] + [k for k in args.keys if k != 0]
    reference = None
    runs = [(max_keys, order) for max_keys in settings for order in (range(args.orders) if max_keys > 0 else [0])]
    for max_keys, order in runs:
        embedding, clusters, attention_s, total_s = read_out(model, max_keys, order)
        if reference is None:
            reference = embedding, clusters
        row = {
            "tag": args.tag,
            "cells": adata.n_obs,
            "keys": {0: "all", -1: "none"}.get(max_keys, max_keys),
            "order": order,
            "alpha": round(model.module.alpha.item(), 4),
            "attention_s": round(attention_s, 2),
            "read_out_s": round(total_s, 1),
            "z_change": round(float(np.linalg.norm(embedding - reference[0]) / np.linalg.norm(reference[0])), 6),
            "cells_moved": round(float(np.mean(clusters != reference[1])), 6),
            "ari_to_all_keys": round(adjusted_rand_score(reference[1], clusters), 4),
            "ari_labels": round(adjusted_rand_score(labels, clusters), 4) if labels is not None else "",
            "threads": args.threads,
        }
        print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        append_rows(RESULTS_FILE, [row])


if __name__ == "__main__":
    main()
