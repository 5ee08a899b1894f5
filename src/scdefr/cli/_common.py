"""Options every command shares (seed, threads, verbosity) and the process set-up they drive."""

from __future__ import annotations

import argparse
import logging
import os

from .._files import DEFAULT_H5AD_COMPRESSION, H5AD_COMPRESSIONS

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
    group.add_argument(
        "--compression",
        choices=H5AD_COMPRESSIONS,
        default=DEFAULT_H5AD_COMPRESSION,
        help="of the h5ad written: gzip (level 1) or none (about ten times faster to write, three times larger)",
    )


def configure(args: argparse.Namespace) -> None:
    """Logging to stderr and thread limits, before any numerical library starts its pools."""
    from ..errors import ScdefrError

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format=LOG_FORMAT, force=True)
    if args.threads < 0:
        raise ScdefrError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        limit_threads(args.threads)


def limit_threads(n: int) -> None:
    """Cap BLAS/OpenMP, numba and torch thread pools at ``n`` (Nextflow passes ``task.cpus``).

    Environment variables only reach pools not started yet; pools already running (a notebook, the
    runner's later steps, the tests) are capped through their own APIs instead. numba refuses a new
    NUMBA_NUM_THREADS once its pool runs, so the variable is set only before numba is imported.
    """
    import sys

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    if "numpy" in sys.modules:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
