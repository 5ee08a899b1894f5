"""Writing h5ad files atomically, compressed as ``--compression`` says, with matrices carried from the input."""

from __future__ import annotations

import contextlib
import gc
import io
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ScdefrError, system_error
from ..options import CommonOptions
from .atomic import atomic_path

# How --compression maps to h5py: gzip at level 1 writes faster than h5py's default level 4 for
# slightly larger files; none is about ten times faster again for files three times larger (benchmarks/write_cost.py).
_COMPRESSION_OPTIONS = {"gzip": {"compression": "gzip", "compression_opts": 1}, "none": {"compression": None}}

# Set when a failed HDF5 write left HDF5 objects open: the HDF5 library then crashes when the
# interpreter shuts down, so the command line ends the process without that shutdown.
_hdf5_state = {"broken": False}


def hdf5_broken() -> bool:
    """Whether a failed HDF5 write left the HDF5 library in a state it cannot shut down from."""
    return _hdf5_state["broken"]


def check_compression(compression: str) -> None:
    """Refuse a compression :func:`write_h5ad` does not know, before any work that precedes the write."""
    if compression not in _COMPRESSION_OPTIONS:
        raise ScdefrError(f"compression must be one of {', '.join(_COMPRESSION_OPTIONS)}, got {compression!r}")


def write_h5ad(
    adata,
    path: str | os.PathLike,
    compression: str = CommonOptions.compression,
    carry: tuple[str | os.PathLike, Sequence[str]] | None = None,
) -> Path:
    """Write an AnnData atomically, compressed as ``compression`` says (``--compression``: gzip or none).

    ``carry = (source, elements)`` copies those elements of the h5ad ``source`` (e.g. ``'X'``,
    ``'layers/counts'``) into the new file: a step that does not use a matrix reads its input
    without it (``scdefr.io.read_step_h5ad(..., leave_on_disk=elements)``) and passes it on here,
    a slice at a time, instead of holding it.
    """
    check_compression(compression)
    with atomic_path(path) as tmp:
        write_h5ad_to(adata, tmp, path, compression, carry)
    return Path(path)


def write_h5ad_to(
    adata,
    tmp: Path,
    final: str | os.PathLike,
    compression: str = CommonOptions.compression,
    carry: tuple[str | os.PathLike, Sequence[str]] | None = None,
) -> None:
    """:func:`write_h5ad` into the temporary file ``tmp`` of ``final`` (inside :func:`atomic_paths`).

    h5py reports a failed write (a full disk) with the errno in its message and prints its error
    stack on the way: the stack is dropped and the failure raised as an ``OSError`` naming ``final``.
    """
    check_compression(compression)
    options = _COMPRESSION_OPTIONS[compression]
    open_before = _open_hdf5_objects()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            adata.write_h5ad(tmp, **options)
            if carry:
                _carry(carry, tmp, options)
    except (OSError, RuntimeError) as exc:
        refused = system_error(exc, final)
        if refused is None:
            raise
    else:
        sys.stderr.write(printed.getvalue())  # warnings printed during a successful write
        return
    gc.collect()  # the failed write's own objects are released here; what stays open is HDF5's leak
    if _open_hdf5_objects() > open_before:
        _hdf5_state["broken"] = True
    raise refused


def _carry(carry: tuple[str | os.PathLike, Sequence[str]], tmp: Path, options: dict) -> None:
    import h5py

    source, elements = carry
    with h5py.File(source, "r") as read, h5py.File(tmp, "a") as written:
        for element in elements:
            if element in read:
                parent, _, name = element.rpartition("/")
                _copy_element(read[element], written.require_group(parent) if parent else written, name, options)


def _open_hdf5_objects() -> int:
    import h5py

    return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_ALL))


# Values a carried matrix is copied at a time (64 MB of float32).
COPY_ELEMENTS = 1 << 24


def _copy_element(source, parent, name: str, options: dict) -> None:
    """The HDF5 group or dataset ``source`` as ``parent[name]``, with its attributes; datasets are
    written with ``options`` (the step's compression), COPY_ELEMENTS values at a time.

    Where every dataset of ``source`` is already stored that way, HDF5 copies it as stored, chunk by
    chunk, without decompressing and compressing again.
    """
    import h5py

    if _stored_as(source, options):
        parent.copy(source, name)
        return
    if isinstance(source, h5py.Group):
        target = parent.create_group(name)
        for key, child in source.items():
            _copy_element(child, target, key, options)
    elif source.ndim == 0 or source.size == 0:
        target = parent.create_dataset(name, data=source[()])
    else:
        target = parent.create_dataset(name, shape=source.shape, dtype=source.dtype, **options)
        rows = max(1, COPY_ELEMENTS // math.prod(source.shape[1:]))
        for start in range(0, source.shape[0], rows):
            target[start : start + rows] = source[start : start + rows]
    for key, value in source.attrs.items():
        target.attrs[key] = value


def _stored_as(element, options: dict) -> bool:
    """Whether every dataset in ``element`` has exactly the compression ``options`` ask for, and no
    other filter."""
    import h5py

    if isinstance(element, h5py.Group):
        return all(_stored_as(child, options) for child in element.values())
    return (
        element.compression == options["compression"]
        and element.compression_opts == options.get("compression_opts")
        and not (element.shuffle or element.fletcher32 or element.scaleoffset is not None)
    )
