"""``scdefr run``: every step (qc -> graph -> train -> export) on one machine, in the pipeline's layout."""

from __future__ import annotations

import argparse

HELP = "run qc -> graph -> train -> export on one machine (outputs in OUTDIR/SAMPLE/<step>/, as the pipeline)"


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="raw counts (any format 'scdefr qc' reads)")
    parser.add_argument("--outdir", required=True, help="results folder; this sample's files go to OUTDIR/SAMPLE/")
    parser.add_argument("--sample", default=None, help="sample name (default: the input's file name without suffixes)")


def main(args: argparse.Namespace) -> None:
    from ..runner import run

    run(args)
