"""``scdefr export``: clusters table, embedding, metrics, plots and MultiQC content of a trained sample."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "write the clusters table, embedding, metrics, plots and MultiQC content of a trained sample"

logger = logging.getLogger(__name__)
CARRIED = ("X", "layers/counts")


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="output of 'scdefr train' (S.trained.h5ad)")
    parser.add_argument("--outdir", required=True, help="folder for the exported files")
    parser.add_argument(
        "--prefix", default=None, help="file name prefix (default: the input's name without .trained.h5ad)"
    )


def default_prefix(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".trained.h5ad", ".h5ad"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def main(args: argparse.Namespace) -> None:
    from .._files.paths import check_distinct, check_name
    from ..export import export, output_paths
    from ..io import read_step_h5ad
    from ..options import ExportOptions

    options = ExportOptions.pick(vars(args))
    if args.prefix is not None:
        prefix = check_name(args.prefix, "--prefix")
    else:
        prefix = check_name(default_prefix(args.input), "--prefix", derived_from=args.input)
    written = [("--outdir/--prefix", path) for path in output_paths(args.outdir, prefix).values()]
    check_distinct({"--input": args.input}, written)
    # The expression matrices pass through untouched: copied from file to file rather than held.
    adata = read_step_h5ad(args.input, require_uns="scdefr", made_by="scdefr train", leave_on_disk=CARRIED)
    export(
        adata,
        args.outdir,
        prefix,
        **options.to_dict(),
        seed=args.seed,
        compression=args.compression,
        carry=(args.input, CARRIED),
    )
