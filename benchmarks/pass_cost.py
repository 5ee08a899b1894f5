"""Wall time and peak memory of one whole-graph inference pass and of one pre-training epoch.

Reads the output of ``scdefr graph`` and builds the default network. The weights are left
untrained: the cost of a pass does not depend on them. Memory is the process's peak resident set
during each measurement, above its resident set just before it. The peak is reset through
``/proc/self/clear_refs``, so this script runs on Linux only.

    python benchmarks/pass_cost.py sim100000.graph.h5ad --threads 2 --tag v5_horner
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import append_rows, stopwatch

RESULTS_FILE = "pass_cost.csv"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(run) -> dict:
    """Seconds and peak resident memory above the starting resident memory (GB) of ``run()``."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (the peak) to the current VmRSS
    before = _status_kb("VmRSS")
    with stopwatch() as timing:
        run()
    return {"seconds": round(timing["seconds"], 1), "peak_above_start_gb": round((_status_kb("VmHWM") - before) / 1e6, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graph", help="an h5ad written by `scdefr graph`")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epoch", action="store_true", help="also time one pre-training epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="pass_cost")
    args = parser.parse_args(argv)

    import anndata as ad
    import torch

    from scdefr.nn import SCDEFRModule
    from scdefr.training import CellGraph, TrainingConfig, TrainingPlan

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    graph = CellGraph.from_anndata(ad.read_h5ad(args.graph))
    module = SCDEFRModule(n_genes=graph.n_genes, n_cells=graph.n_cells)
    plan = TrainingPlan(module, graph, TrainingConfig(seed=args.seed), lambda z: (0, {}))
    row = {"tag": args.tag, "graph": args.graph, "n_cells": graph.n_cells, "n_genes": graph.n_genes,
           "threads": args.threads, "batch_size": plan.batch_size}
    row.update({f"inference_{key}": value for key, value in measure(plan.infer).items()})
    if args.epoch:
        row.update({f"epoch_{key}": value for key, value in measure(lambda: plan._run_phase("pretrain", 1)).items()})
    print(row)
    append_rows(RESULTS_FILE, [row])


if __name__ == "__main__":
    main()
