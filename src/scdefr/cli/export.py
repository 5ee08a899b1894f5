"""``scdefr export``: clusters table, embedding, metrics, plots and MultiQC content of a trained sample."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..config import UMAP_MAX_CELLS

HELP = "write the clusters table, embedding, metrics, plots and MultiQC content of a trained sample"

logger = logging.getLogger(__name__)
CARRIED = ("X", "layers/counts")


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="output of 'scdefr train' (S.trained.h5ad)")
    parser.add_argument("--outdir", required=True, help="folder for the exported files")
    parser.add_argument("--prefix", default=None, help="file name prefix (default: the input's name without .trained.h5ad)")


def _umap_limit(value: str) -> int | None:
    """argparse type: 0 (fit every cell, returned as None) or at least 2 cells, checked before any step runs."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0 or number == 1:
        raise argparse.ArgumentTypeError(f"expected 0 (every cell) or a number of cells >= 2, got {value!r}")
    return number or None


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("export")
    group.add_argument(
        "--label-key",
        default=None,
        help="obs column of known labels: scores the clusters (ARI, NMI, accuracy) and colours a second UMAP; "
        "read only at export, never by training",
    )
    group.add_argument(
        "--umap-max-cells",
        type=_umap_limit,
        default=UMAP_MAX_CELLS,
        help="fit the UMAP on a random subsample of this many cells and place every other cell among its "
        f"nearest fitted cells (default {UMAP_MAX_CELLS:,}; 0: fit every cell)",
    )


def default_prefix(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".trained.h5ad", ".h5ad"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def main(args: argparse.Namespace) -> None:
    from ..export import export
    from ..io import read_step_h5ad

    # The expression matrices pass through untouched: copied from file to file rather than held.
    adata = read_step_h5ad(args.input, require_uns="scdefr", made_by="scdefr train", leave_on_disk=CARRIED)
    export(adata, args.outdir, args.prefix or default_prefix(args.input), label_key=args.label_key, seed=args.seed,
           umap_max_cells=args.umap_max_cells, compression=args.compression, carry=(args.input, CARRIED))
