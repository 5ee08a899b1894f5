"""Safe output: never over an input, never half-written, never a result mixed from two runs.

Every file is written under a temporary name in its target folder and renamed to its final name only
when complete (:func:`atomic_path`, :func:`atomic_paths` for the files of a step, which appear
together). A temporary name says which process wrote it (``.<name>.<host>-<pid>.<token>.tmp``): one
left by a killed process is removed the next time that output is written, and its name (hidden, ending
in ``.tmp``) is never that of a result. :func:`check_distinct` refuses, before any work, an output
that is an input or another output under any spelling.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import math
import os
import re
import secrets
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import combinations
from pathlib import Path

from .errors import ScdefrError, system_error
from .options import CommonOptions

# A sample name or file prefix: it names folders and files, so no separators, spaces or newlines.
SAMPLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_RULE = "must start with a letter or digit and use only letters, digits, '.', '_' and '-'"


def check_name(name: str, flag: str, derived_from: str | os.PathLike | None = None) -> str:
    """``name`` if it is a valid sample name or prefix (the whole of it), else a one-line error that
    says to pass ``flag``; ``derived_from`` is the file the name was taken from, if any."""
    if isinstance(name, str) and SAMPLE_NAME.fullmatch(name):
        return name
    if derived_from is not None:
        raise ScdefrError(
            f"the name {name!r} taken from {Path(derived_from).name!r} {NAME_RULE}: pass {flag} NAME to name it"
        )
    raise ScdefrError(f"{flag} {name!r} {NAME_RULE}")


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or explain in one line why it cannot be written."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ScdefrError(f"cannot create output folder {folder}: a file is in the way") from None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(folder)) from None
    if not os.access(folder, os.W_OK):
        number = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
        raise OSError(number, os.strerror(number), str(folder))
    return folder


def check_writable_dir(path: str | os.PathLike) -> None:
    """Refuse, without creating anything, a folder that could not be created or written into."""
    folder = Path(path).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ScdefrError(f"cannot create output folder {path}: a file is in the way ({existing})")
    if not os.access(existing, os.W_OK | os.X_OK):
        number = errno.EROFS if os.statvfs(existing).f_flag & os.ST_RDONLY else errno.EACCES
        raise OSError(number, os.strerror(number), str(existing))


def created_folders(path: str | os.PathLike) -> list[Path]:
    """The folders :func:`ensure_writable_dir` would create for ``path``, innermost first."""
    missing = []
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove each of ``folders`` (innermost first) that is empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


# --- paths that must differ ---------------------------------------------------------------------
Paths = Mapping[str, "str | os.PathLike | None"] | Iterable[tuple[str, "str | os.PathLike | None"]]


def check_distinct(inputs: Paths, outputs: Paths) -> None:
    """Refuse in one line an output that is an input, or another output, or an existing folder, or
    one whose folder cannot be created or written.

    ``inputs`` and ``outputs`` map (or pair) the options that name the paths (``'--output'``) to
    them. Paths are compared as the files they reach: relative and absolute spellings, symbolic links
    and hard links of one file are one file. The files of an input folder (a 10x matrix folder) are
    inputs too.
    """
    written = [(flag, Path(path)) for flag, path in _pairs(outputs) if path is not None]
    read = [(flag, Path(path)) for flag, path in _pairs(inputs) if path is not None]
    for flag, path in written:
        if path.is_dir():
            raise ScdefrError(f"{flag} {path} is a folder: give the path of a file to write")
        check_writable_dir(path.parent)
    for (flag_a, a), (flag_b, b) in combinations(written, 2):
        if same_file(a, b):
            raise ScdefrError(f"{flag_a} and {flag_b} are the same file ({a}): give them different paths")
    for flag_out, out in written:
        for flag_in, source in read:
            for part in _files_of(source):
                if not same_file(out, part):
                    continue
                what = f"the input ({flag_in})" if part == source else f"{part.name} of the input folder ({flag_in})"
                raise ScdefrError(f"{flag_out} {out} is {what}: it would be overwritten; write to another path")


def _pairs(paths: Paths) -> Iterable[tuple[str, str | os.PathLike | None]]:
    return paths.items() if isinstance(paths, Mapping) else paths


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (hard and symbolic links included), existing or not."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` lies in ``folder`` or below it (links followed)."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return [path, *(child for child in path.iterdir() if child.is_file())]
    return [path]


# --- temporary names ------------------------------------------------------------------------------
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def owner_tag() -> str:
    """``<host>-<pid>``: which process a temporary file or folder belongs to."""
    return f"{_host()}-{os.getpid()}"


def is_stale(tag: str) -> bool:
    """Whether the process of ``owner_tag()`` ``tag`` is gone (only a process of this machine can be
    known to be gone; one of another machine is presumed alive)."""
    host, _, pid = tag.rpartition("-")
    if host != _host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def _temporaries_of(final: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(final.name)}\.(?P<tag>.+-\d+)\.[0-9a-f]+\.tmp")


def remove_stale_temporaries(final: Path) -> None:
    """Remove the temporary files of ``final`` that killed processes of this machine left behind."""
    pattern = _temporaries_of(final)
    with contextlib.suppress(OSError):
        for entry in os.scandir(final.parent):
            found = pattern.fullmatch(entry.name)
            if found and is_stale(found["tag"]):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _new_temporary(final: Path) -> Path:
    while True:
        tmp = final.with_name(f".{final.name}.{owner_tag()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        except OSError as exc:  # e.g. a read-only file system, which os.access does not see for root
            raise OSError(exc.errno, exc.strerror, str(final)) from None
        return tmp


# --- atomic writes --------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_paths(finals: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``finals``; rename them all to their final names only if
    the block succeeds (so the files of one step appear together), else remove them.

    A failure of the system (disk full, permission) is raised as an ``OSError`` naming the final file.
    """
    finals = [Path(final) for final in finals]
    made: list[Path] = []  # folders created here, removed again if nothing was written
    temporaries: dict[Path, Path] = {}
    try:
        for final in finals:
            if final.is_dir():
                raise ScdefrError(f"{final} is a folder: give the path of a file to write")
            made += created_folders(final.parent)
            ensure_writable_dir(final.parent)
            remove_stale_temporaries(final)
        for final in finals:
            temporaries[_new_temporary(final)] = final
        with _naming_finals(temporaries):
            yield list(temporaries)
            mode = 0o666 & ~_current_umask()  # published results get the usual umask-based mode, not 0600
            for tmp in temporaries:
                os.chmod(tmp, mode)
            for tmp, final in temporaries.items():
                os.replace(tmp, final)
            made = []
    finally:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        remove_if_empty(sorted(set(made), key=lambda folder: len(folder.parts), reverse=True))


@contextlib.contextmanager
def naming(final: str | os.PathLike) -> Iterator[None]:
    """Raise a read or write the system refuses in the block (one file of :func:`atomic_paths`) as an
    ``OSError`` naming ``final``."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        refused = system_error(exc, final)
        if refused is None:
            raise
        raise refused from None


@contextlib.contextmanager
def _naming_finals(temporaries: dict[Path, Path]) -> Iterator[None]:
    """Raise a refused read or write in the block as an ``OSError`` that names the final file (not
    its temporary), or the file it names if that is another one."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        named = getattr(exc, "filename", None)
        finals = list(temporaries.values())
        if named is not None:
            named = temporaries.get(Path(named), named)
        elif len(finals) == 1:
            named = finals[0]
        else:
            named = finals[0].parent
        refused = system_error(exc, named)
        if refused is None:
            raise
        raise refused from None


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` only if the block succeeds."""
    with atomic_paths([final]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def scratch_dir(folder: str | os.PathLike, prefix: str) -> Iterator[Path]:
    """A temporary folder inside ``folder`` (for parts of an output), removed with what it holds; one
    that a killed process of this machine left is removed first."""
    folder = ensure_writable_dir(folder)
    pattern = re.compile(rf"{re.escape(prefix)}(?P<tag>.+-\d+)\.[0-9a-f]+")
    for entry in os.scandir(folder):
        found = pattern.fullmatch(entry.name)
        if found and entry.is_dir(follow_symlinks=False) and is_stale(found["tag"]):
            shutil.rmtree(entry.path, ignore_errors=True)
    path = folder / f"{prefix}{owner_tag()}.{secrets.token_hex(4)}"
    try:
        path.mkdir()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(folder)) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- h5ad -----------------------------------------------------------------------------------------
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


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
