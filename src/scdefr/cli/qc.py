"""``scdefr qc``: read raw counts in any supported format, filter, normalise, keep highly variable genes."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "QC filters, size factors, log-normalisation and highly variable genes (h5ad, 10x h5/mtx, csv/tsv)"

logger = logging.getLogger(__name__)


def side_paths(output: str | Path) -> tuple[Path, Path]:
    """Default QC summary and plot paths beside ``output``: ``S.qc.h5ad`` -> ``S.qc_summary.json``, ``S.qc.png``."""
    output = Path(output)
    stem = output.name.removesuffix(".h5ad").removesuffix(".qc")
    return output.with_name(f"{stem}.qc_summary.json"), output.with_name(f"{stem}.qc.png")


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        help="raw counts: .h5ad, 10x .h5, 10x matrix folder, .csv/.tsv[.gz] (cells x genes), the paper's HDF5 "
        "or scDeepCluster's X/Y .h5",
    )
    parser.add_argument("--output", required=True, help="QC'd h5ad to write (e.g. S.qc.h5ad)")
    parser.add_argument("--summary", default=None, help="QC summary JSON (default: S.qc_summary.json beside --output)")
    parser.add_argument("--plot", default=None, help="QC plot PNG (default: S.qc.png beside --output)")


def main(args: argparse.Namespace) -> None:
    import json

    from .. import io, pl, pp
    from .._files.atomic import atomic_paths, naming
    from .._files.h5ad import write_h5ad_to
    from .._files.paths import check_distinct
    from ..options import QCOptions

    options = QCOptions.pick(vars(args)).to_dict()
    transpose = options.pop("transpose")

    summary_path, plot_path = side_paths(args.output)
    summary_path = Path(args.summary) if args.summary else summary_path
    plot_path = Path(args.plot) if args.plot else plot_path
    check_distinct({"--input": args.input}, {"--output": args.output, "--summary": summary_path, "--plot": plot_path})

    adata = io.read_counts(args.input, transpose=transpose)
    result = pp.qc(adata, **options, preset=args.preset)
    summary = result.uns["scdefr_qc"]["summary"]
    figure = pl.qc_plot(adata, result, title=Path(args.output).name.removesuffix(".h5ad").removesuffix(".qc"))

    # The three files appear together or not at all.
    record = result.uns["scdefr_qc"]
    summary_text = json.dumps({"params": record["params"], **summary, "notes": list(record["notes"])}, indent=2) + "\n"
    with atomic_paths([args.output, summary_path, plot_path]) as (h5ad_tmp, summary_tmp, plot_tmp):
        write_h5ad_to(result, h5ad_tmp, args.output, compression=args.compression)
        with naming(summary_path):
            summary_tmp.write_text(summary_text)
        with naming(plot_path):
            figure.savefig(plot_tmp, format="png", dpi=110)
    logger.info(
        "wrote %s (%d cells x %d genes), %s, %s",
        args.output,
        result.n_obs,
        result.n_vars,
        summary_path,
        plot_path,
    )
