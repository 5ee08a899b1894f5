"""Process set-up that the options every command shares drive: logging, progress bars, thread limits."""

from __future__ import annotations

import logging
import os

from ..options import CommonOptions

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(common: CommonOptions) -> None:
    """Logging to stderr, progress bars and thread limits, before any numerical library starts its pools."""
    from .._progress import settings

    logging.basicConfig(level=logging.WARNING if common.quiet else logging.INFO, format=LOG_FORMAT, force=True)
    settings.progress = not common.quiet
    if common.threads:
        limit_threads(common.threads)


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
