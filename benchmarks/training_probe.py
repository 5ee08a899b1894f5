"""How well the embeddings separate the annotated types *during* training: a diagnostic, not a benchmark.

After chosen numbers of pre-training epochs (and of joint epochs), scores KMeans with the true
number of types on z, z_ae and z_graph, and the model's own argmax-Q labels once the centres exist.
This is how the round-2 changes in BENCHMARKS.md were found (the paper's graph term destroying the
structure the random initialisation already had). Labels score only; the plan never sees them
(it is handed the true K, as the paper's evaluation does).

    python benchmarks/training_probe.py pbmc_10x_top2000 --checks 0 20 40 60 --joint-checks 10 40
    python benchmarks/training_probe.py pbmc_10x_top2000 --checks 20 --config graph_loss=paper
    python benchmarks/training_probe.py pbmc_10x_top2000 --checks 0 --input-scaling none
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import LABEL_KEY, append_rows
from baselines import preprocess
from scdefr_quality import parse_params

RESULTS_FILE = "training_probe.csv"


def embeddings(plan) -> dict[str, np.ndarray]:
    """Evaluation-mode z, z_ae, z_graph (and Q once the centres exist) of every cell."""
    out = plan.infer()
    return {name: getattr(out, name).float().cpu().numpy()
            for name in ("z", "z_ae", "z_graph", "q") if getattr(out, name) is not None}


def score_embeddings(found: dict, truth: np.ndarray, k: int, seed: int) -> dict[str, float]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    scores = {
        f"ari_kmeans_{name}": adjusted_rand_score(truth, KMeans(k, n_init=5, random_state=seed).fit_predict(value))
        for name, value in found.items()
        if name != "q"
    }
    if "q" in found:
        scores["ari_argmax_q"] = adjusted_rand_score(truth, found["q"].argmax(axis=1))
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checks", nargs="+", type=int, default=[0, 20, 40, 60], help="pre-training epochs to score at")
    parser.add_argument("--joint-checks", nargs="*", type=int, default=[10, 40], help="joint epochs to score at")
    parser.add_argument("--hidden-dims", default=None, help="e.g. 1024,128,24 (default: the package's)")
    parser.add_argument("--input-scaling", default="scale", help="scale or none (what the encoders see of X)")
    parser.add_argument("--config", action="append", default=[], help="NAME=VALUE TrainingConfig field")
    parser.add_argument("--tag", default="probe")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from scdefr.config import DEFAULT_HIDDEN_DIMS
    from scdefr.nn import SCDEFRModule
    from scdefr.training import CellGraph, TrainingConfig, TrainingPlan

    torch.set_num_threads(args.threads)
    adata = preprocess(args.dataset, args.seed)
    truth = adata.obs[LABEL_KEY].astype(str).to_numpy()
    k = len(set(truth))
    graph = CellGraph.from_anndata(adata, input_scaling=args.input_scaling)
    hidden = [int(w) for w in args.hidden_dims.split(",")] if args.hidden_dims else list(DEFAULT_HIDDEN_DIMS)
    torch.manual_seed(args.seed)
    module = SCDEFRModule(graph.n_genes, graph.n_cells, hidden_dims=hidden)
    options = parse_params(args.config)
    config = TrainingConfig(pretrain_epochs=max(args.checks), epochs=max(args.joint_checks or [0]), seed=args.seed, **options)
    plan = TrainingPlan(module, graph, config, lambda embedding: (k, {"method": "given"}))
    started = time.perf_counter()

    def record(phase: str, epoch: int) -> None:
        row = {"tag": args.tag, "dataset": args.dataset, "seed": args.seed, "phase": phase, "epoch": epoch,
               "hidden_dims": ",".join(map(str, hidden)), "input_scaling": args.input_scaling, "config": str(options),
               "seconds": round(time.perf_counter() - started, 1),
               **score_embeddings(embeddings(plan), truth, k, args.seed)}
        append_rows(RESULTS_FILE, [row])
        print({key: (round(value, 3) if isinstance(value, float) else value) for key, value in row.items()}, flush=True)

    for epoch in sorted(args.checks):
        plan._run_phase("pretrain", epoch)
        record("pretrain", epoch)
    if args.joint_checks:
        plan.initialise_centres()
        for epoch in sorted(args.joint_checks):
            plan._run_phase("joint", epoch)
            record("joint", epoch)


if __name__ == "__main__":
    main()
