"""Sample names, output folders, and the check that no output is an input or another output."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterable, Mapping
from itertools import combinations
from pathlib import Path

from ..errors import ScdefrError

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
