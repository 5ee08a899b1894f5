"""Atomic output: write to a temporary name in the target folder, then rename.

A crash or a bad input never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import ScdefrError


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
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
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


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# How every step compresses the h5ad it writes. gzip at level 1: at 100,000 cells 30% faster to write
# than h5py's default level 4, for files 16% larger (BENCHMARKS.md, round 9); none: about ten times
# faster than that, for files three times larger (round 10).
_COMPRESSION_OPTIONS = {"gzip": {"compression": "gzip", "compression_opts": 1}, "none": {"compression": None}}
H5AD_COMPRESSIONS = tuple(_COMPRESSION_OPTIONS)
DEFAULT_H5AD_COMPRESSION = "gzip"


def check_compression(compression: str) -> None:
    """Refuse a compression :func:`write_h5ad` does not know, before any work that precedes the write."""
    if compression not in _COMPRESSION_OPTIONS:
        raise ScdefrError(f"compression must be one of {', '.join(_COMPRESSION_OPTIONS)}, got {compression!r}")


def write_h5ad(adata, path: str | os.PathLike, compression: str = DEFAULT_H5AD_COMPRESSION) -> Path:
    """Write an AnnData atomically, compressed as ``compression`` says (one of :data:`H5AD_COMPRESSIONS`)."""
    check_compression(compression)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, **_COMPRESSION_OPTIONS[compression])
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
