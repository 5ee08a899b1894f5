"""Temporary names and atomic writes: a file appears under its final name only when complete."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import ScdefrError, system_error
from .paths import created_folders, ensure_writable_dir, remove_if_empty


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


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
