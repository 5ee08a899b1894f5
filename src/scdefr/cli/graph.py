"""``scdefr graph``: PCA, kNN graph and the normalised adjacency the graph encoder propagates over."""

from __future__ import annotations

import argparse
import logging

HELP = "PCA, kNN cell graph and normalised adjacency of a 'scdefr qc' output"

logger = logging.getLogger(__name__)
CARRIED = ("layers/counts",)


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="output of 'scdefr qc' (S.qc.h5ad)")
    parser.add_argument("--output", required=True, help="h5ad to write (e.g. S.graph.h5ad)")


def main(args: argparse.Namespace) -> None:
    from .. import io, pp
    from .._files.h5ad import write_h5ad
    from .._files.paths import check_distinct
    from ..options import GraphOptions

    check_distinct({"--input": args.input}, {"--output": args.output})
    # The raw counts pass through untouched: copied from file to file rather than held.
    adata = io.read_step_h5ad(args.input, require_uns="scdefr_qc", made_by="scdefr qc", leave_on_disk=CARRIED)
    pp.build_graph(adata, **GraphOptions.pick(vars(args)).to_dict(), preset=args.preset, seed=args.seed)
    write_h5ad(adata, args.output, compression=args.compression, carry=(args.input, CARRIED))
    stats = adata.uns["scdefr_graph"]
    logger.info(
        "wrote %s: %d cells, %d edges, degree %d-%d (median %g), %d connected component(s)",
        args.output,
        adata.n_obs,
        stats["n_edges"],
        stats["degree"]["min"],
        stats["degree"]["max"],
        stats["degree"]["median"],
        stats["n_connected_components"],
    )
