"""Is it raw counts? The check every reader and the QC step apply before any work."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..errors import ScdefrError

# log1p of raw counts rarely exceeds this; normalised (CPM-like) values go far beyond it.
_LOG_SCALE_MAX = 30.0
# Values the raw-count checks look at at once: their temporaries (rounding, masks) stay this size.
CHECK_CHUNK = 1 << 24


def validate_raw_counts(matrix, *, what: str = "counts", uns: dict | None = None) -> None:
    """Raise :class:`ScdefrError` unless ``matrix`` holds raw counts: finite, >= 0, integer-valued.

    Floats are fine as long as they are whole numbers. ``uns`` (if given) is checked for scanpy's
    ``log1p`` marker so integer-looking log data is caught too.
    """
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ScdefrError(f"{what}: empty matrix ({matrix.shape[0]} cells x {matrix.shape[1]} genes)")
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise ScdefrError(f"{what}: values are {values.dtype}, not numbers")
    if values.size == 0:
        return  # all-zero sparse matrix; the QC filters report it
    n_nan = n_infinite = 0
    for chunk in _chunks(values):
        n_nan += int(np.isnan(chunk).sum())
        n_infinite += int(np.isinf(chunk).sum())
    if n_nan or n_infinite:
        kind = "NaN" if n_nan else "infinite"
        raise ScdefrError(f"{what}: {n_nan + n_infinite} {kind} value(s); give raw counts")
    vmin = min(chunk.min() for chunk in _chunks(values))
    if vmin < 0:
        raise ScdefrError(f"{what}: negative values (min {vmin:g}); give raw counts, not scaled data")
    if uns is not None and "log1p" in uns:
        raise ScdefrError(f"{what}: uns['log1p'] says the data were log-transformed; give raw counts")
    for chunk in _chunks(values):
        fractional = np.abs(chunk - np.round(chunk)) > 1e-6
        if fractional.any():
            example = chunk[fractional][0]
            vmax = max(chunk.max() for chunk in _chunks(values))
            if vmax <= _LOG_SCALE_MAX:
                raise ScdefrError(
                    f"{what}: non-integer values (e.g. {example:g}, max {vmax:g}) - looks log-transformed; "
                    "give raw counts"
                )
            raise ScdefrError(f"{what}: non-integer values (e.g. {example:g}) - looks normalised; give raw counts")


def _chunks(values: np.ndarray):
    """``values`` flattened, CHECK_CHUNK at a time."""
    flat = values.reshape(-1)
    for start in range(0, flat.size, CHECK_CHUNK):
        yield flat[start : start + CHECK_CHUNK]
