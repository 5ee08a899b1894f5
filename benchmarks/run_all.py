"""The maintained benchmark suite (what ``make benchmark`` runs), one part after another.

1. baselines (Leiden default, Leiden at true k, KMeans on PCA) on every dataset and seed;
2. scDEFR with the true number of types and with ``n_clusters='auto'``, package defaults;
3. the two ZINB forms ('counts': raw counts + size factors + separate heads; 'paper': log-normalised
   input + shared head) and the two graph losses ('sampled', 'paper') on two datasets;
4. speed and memory of ``scdefr run`` / ``scdefr train`` on simulated data of growing size.

Results are appended to ``benchmarks/results/*.csv`` as each run finishes; ``summarise.py`` turns
them into the tables of BENCHMARKS.md. On 2 CPU cores the full suite takes several hours (about
60 training runs of 2-10 minutes each on one thread, then the speed sweep): run it on a GPU or many
cores. ``--quick`` is a smoke run of every part (2 datasets, 1 seed, 10 + 5 epochs, 5k-cell scaling with 2 + 2 epochs);
its clustering numbers mean nothing.

    python benchmarks/run_all.py [--quick] [--skip baselines quality zinb graph_loss scaling]
"""

from __future__ import annotations

import argparse
import logging

import baselines
import scaling
import scdefr_quality
from _common import DATASETS, QUICK_DATASETS, SEEDS

PARTS = ("baselines", "quality", "zinb", "graph_loss", "scaling")
QUICK_SCHEDULE = {"pretrain_epochs": 10, "epochs": 5}
COMPARISON_DATASETS = ("pbmc_10x_top2000", "mouse_bladder_2100")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small subset: 2 datasets, 1 seed, short schedule")
    parser.add_argument("--skip", nargs="+", choices=PARTS, default=[], help="parts not to run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    datasets = QUICK_DATASETS if args.quick else DATASETS
    seeds = SEEDS[:1] if args.quick else SEEDS
    schedule = QUICK_SCHEDULE if args.quick else {}
    tag = "quick" if args.quick else "defaults"

    if "baselines" not in args.skip:
        baselines.run(datasets, seeds)
    if "quality" not in args.skip:
        scdefr_quality.run(datasets, seeds, ["true", "auto"], schedule, tag)
    comparison_datasets = COMPARISON_DATASETS[:1] if args.quick else COMPARISON_DATASETS
    for part, option, values in (
        ("zinb", "zinb_form", ("counts", "paper")),
        ("graph_loss", "graph_loss", ("sampled", "paper")),
    ):
        if part not in args.skip:
            for value in values:
                scdefr_quality.run(
                    comparison_datasets, seeds, ["true"], {**schedule, option: value}, f"{tag}_{part}_{value}"
                )
    if "scaling" not in args.skip:
        sizes = ["5000"] if args.quick else ["5000", "10000", "20000", "50000", "100000"]
        extra = ["--train-args", "--pretrain-epochs 2 --epochs 2", "--tag", "quick"] if args.quick else []
        scaling.main(["--sizes", *sizes, "--threads", str(args.threads), *extra])


if __name__ == "__main__":
    main()
