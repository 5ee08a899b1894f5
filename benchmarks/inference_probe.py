"""Batched against whole-graph inference: a diagnostic, not a benchmark (BENCHMARKS.md, round 4).

Trains the network (pre-training only) full batch and in Cluster-GCN batches, then embeds every
cell two ways: over the whole graph (what ``TrainingPlan.embed`` does) and batch by batch over
each batch's own subgraph (what round 3 did). Scores KMeans with the true number of types on z.
Labels only score; training never sees them.

    python benchmarks/inference_probe.py sim100000.h5ad --n-cells 5000 --epochs 20
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import append_rows

RESULTS_FILE = "inference_probe.csv"


def embed_in_batches(plan, parts: list[np.ndarray]) -> np.ndarray:
    """Round 3's inference: evaluation-mode z of each batch (4 parts) from a pass over its own subgraph."""
    import torch

    from scdefr.training import PARTS_PER_BATCH, make_batch

    plan.refresh_batchnorm(plan.whole_graph())
    z = np.zeros((plan.graph.n_cells, plan.module.latent_dim), dtype=np.float32)
    with torch.no_grad():
        for first in range(0, len(parts), PARTS_PER_BATCH):
            cells = np.sort(np.concatenate(parts[first : first + PARTS_PER_BATCH]))
            batch = make_batch(plan.graph, cells, plan.device, counts=False)
            z[cells] = plan.module(batch.x, batch.adjacency, batch.cell_index, None, decode=False).z.numpy()
    return z


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("counts", help="raw counts with the true types in obs[--label-key]")
    parser.add_argument("--label-key", default="cell_type")
    parser.add_argument("--n-cells", type=int, default=5000, help="cells drawn after QC (0: all)")
    parser.add_argument("--epochs", type=int, default=20, help="pre-training epochs")
    parser.add_argument("--batch-size", type=int, default=2048, help="the mini-batch run's batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="v4_inference")
    args = parser.parse_args(argv)

    import torch
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from scdefr import io, pp
    from scdefr.nn import SCDEFRModule
    from scdefr.training import CellGraph, TrainingConfig, TrainingPlan, partition_cells

    torch.set_num_threads(args.threads)
    adata = pp.qc(io.read_counts(args.counts))
    if args.n_cells and args.n_cells < adata.n_obs:
        keep = np.sort(np.random.default_rng(args.seed).choice(adata.n_obs, args.n_cells, replace=False))
        adata = adata[keep].copy()
    pp.build_graph(adata, seed=args.seed)
    truth = adata.obs[args.label_key].to_numpy()
    k = len(set(truth))

    def ari(z):
        return round(adjusted_rand_score(truth, KMeans(k, n_init=5, random_state=args.seed).fit_predict(z)), 3)

    graph = CellGraph.from_anndata(adata)
    parts = partition_cells(graph, args.batch_size, args.seed)
    rows = [{"network": "PCA (50 components)", "embedded": "-", "ari_kmeans": ari(adata.obsm["X_pca"])}]
    for train_batch in (0, args.batch_size):
        torch.manual_seed(args.seed)
        module = SCDEFRModule(n_genes=graph.n_genes, n_cells=graph.n_cells)
        config = TrainingConfig(pretrain_epochs=args.epochs, batch_size=train_batch, seed=args.seed)
        plan = TrainingPlan(module, graph, config, lambda z: (k, {}))
        networks = [("untrained", 0)] if not train_batch else []
        networks.append((f"{args.epochs} epochs, " + (f"batches of {train_batch}" if train_batch else "full batch"), args.epochs))
        for network, epochs in networks:
            plan._run_phase("pretrain", epochs)
            for embedded, z in (("whole graph", plan.embed()[0]), ("in batches", embed_in_batches(plan, parts))):
                rows.append({"network": network, "embedded": embedded, "ari_kmeans": ari(z)})
                print(rows[-1], flush=True)
    for row in rows:
        row.update(tag=args.tag, n_cells=adata.n_obs, counts=args.counts, seed=args.seed, batch_size=args.batch_size)
    append_rows(RESULTS_FILE, rows)


if __name__ == "__main__":
    main()
