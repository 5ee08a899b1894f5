"""Atomic output: write to a temporary name in the target folder, then rename.

A crash or a bad input never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import ScdefrError
from .options import CommonOptions


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or explain in one line why it cannot be written."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScdefrError(f"cannot create output folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise ScdefrError(f"output folder {folder} is not writable")
    return folder


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` only if the block succeeds."""
    final = Path(final)
    ensure_writable_dir(final.parent if str(final.parent) else ".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:  # e.g. a read-only file system, which os.access does not see for root
        raise ScdefrError(f"cannot write into {final.parent}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes files private (0600); published results get the usual umask-based mode.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def scratch_dir(folder: str | os.PathLike, prefix: str) -> Iterator[Path]:
    """A temporary folder inside ``folder`` (for parts of an output), removed with what it holds."""
    folder = ensure_writable_dir(folder)
    try:
        scratch = tempfile.TemporaryDirectory(prefix=prefix, dir=folder)
    except OSError as exc:
        raise ScdefrError(f"cannot write into {folder}: {exc.strerror}") from None
    with scratch as path:
        yield Path(path)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# How --compression maps to h5py: gzip at level 1 writes faster than h5py's default level 4 for
# slightly larger files; none is about ten times faster again for files three times larger (benchmarks/write_cost.py).
_COMPRESSION_OPTIONS = {"gzip": {"compression": "gzip", "compression_opts": 1}, "none": {"compression": None}}


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
    options = _COMPRESSION_OPTIONS[compression]
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, **options)
        if carry:
            import h5py

            source, elements = carry
            with h5py.File(source, "r") as read, h5py.File(tmp, "a") as written:
                for element in elements:
                    if element in read:
                        parent, _, name = element.rpartition("/")
                        _copy_element(
                            read[element], written.require_group(parent) if parent else written, name, options
                        )
    return Path(path)


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


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
