"""``scdefr simulate``: ZINB counts with planted cell types (demo data, tests, benchmarks)."""

from __future__ import annotations

import argparse
import logging

HELP = "simulate UMI counts with planted cell types (labels in obs['cell_type'])"

logger = logging.getLogger(__name__)


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="h5ad file to write")


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulation")
    group.add_argument("--n-cells", type=int, default=2000, help="number of cells")
    group.add_argument("--n-genes", type=int, default=2000, help="number of genes (13 of them mitochondrial, MT-...)")
    group.add_argument("--n-clusters", type=int, default=6, help="number of planted cell types")
    group.add_argument(
        "--marker-lfc",
        type=float,
        default=0.8,
        help="median natural-log fold change of marker genes (larger: easier to separate)",
    )


def main(args: argparse.Namespace) -> None:
    from .._files import write_h5ad
    from ..simulate import simulate_counts

    adata = simulate_counts(
        n_cells=args.n_cells,
        n_genes=args.n_genes,
        n_clusters=args.n_clusters,
        seed=args.seed,
        marker_log_fold_change=args.marker_lfc,
    )
    write_h5ad(adata, args.output, compression=args.compression)
    logger.info("wrote %s (%d cells x %d genes)", args.output, adata.n_obs, adata.n_vars)
