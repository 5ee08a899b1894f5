"""Options every command shares (seed, threads, verbosity) and the process set-up they drive."""

from __future__ import annotations

import argparse
import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("general")
    group.add_argument("--seed", type=int, default=0, help="random seed (PCA, initialisation, training, UMAP)")
    group.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for numerical libraries (0: all available; Nextflow passes task.cpus)",
    )
    group.add_argument("--quiet", action="store_true", help="only warnings and errors, no progress bars")


def configure(args: argparse.Namespace) -> None:
    """Logging to stderr and thread limits, before any numerical library starts its pools."""
    from ..errors import ScdefrError

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format=LOG_FORMAT, force=True)
    if args.threads < 0:
        raise ScdefrError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:  # steps without torch (qc, graph, export images)
            pass
