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

    Floats are fine as long as they are whole numbers. Values are checked in chunks of
    :data:`CHECK_CHUNK`, so the temporaries stay small whatever the matrix.

    Parameters
    ----------
    matrix
        Dense or sparse cells x genes matrix.
    what
        What the matrix is, for the message (e.g. ``"counts in X"``).
    uns
        The AnnData's ``uns``, if any: checked for scanpy's ``log1p`` marker so integer-looking log
        data is caught too.

    Raises
    ------
    ScdefrError
        The matrix is empty, not numeric, has NaN, infinite, negative or non-integer values, or
        ``uns`` says it was log-transformed.
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


# The largest integer up to which float32 holds every integer exactly.
FLOAT32_EXACT = 2**24


def float32_rounding_note(matrix) -> str | None:
    """What storing ``matrix`` as float32 (as every step does) changes, as a note; None if nothing.

    float32 holds integers exactly only up to 2^24 = 16,777,216; a larger count becomes the nearest
    value float32 holds, a relative change below 6e-8. Such counts are kept (in float32) and
    reported rather than refused: doubling every matrix to float64 for them would cost more than the
    change is worth. A matrix already in float32 cannot say what it held before: values above 2^24
    in it are reported as possibly rounded.
    """
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if values.size == 0 or not np.issubdtype(values.dtype, np.number):
        return None
    large = [chunk[chunk > FLOAT32_EXACT] for chunk in _chunks(values)]
    n_large = sum(part.size for part in large)
    if not n_large:
        return None
    largest = max(float(part.max()) for part in large if part.size)
    if values.dtype == np.float32:
        return (
            f"{n_large} count(s) above 2^24 (largest {largest:.0f}) were read as float32, which holds integers "
            "exactly only up to 2^24: they may have been rounded (relative change below 6e-8)"
        )
    n_rounded = sum(int((part.astype(np.float32) != part).sum()) for part in large)
    if not n_rounded:
        return None
    return (
        f"{n_rounded} count(s) above 2^24 (largest {largest:.0f}) were rounded to the nearest float32 value "
        "(relative change below 6e-8): the steps store counts as float32"
    )


def _chunks(values: np.ndarray):
    """``values`` flattened, CHECK_CHUNK at a time."""
    flat = values.reshape(-1)
    for start in range(0, flat.size, CHECK_CHUNK):
        yield flat[start : start + CHECK_CHUNK]
