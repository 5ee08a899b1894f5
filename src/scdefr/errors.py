"""One exception type for every problem the user can fix, and how each fault ends the command line.

The command line turns them into a one-line message and a non-zero exit status, so nothing below it
prints errors or calls ``sys.exit``.
"""

from __future__ import annotations

import errno

# Exit statuses of the command line (all below 128, which shells and Nextflow keep for signals).
EXIT_USAGE = 2  # bad input or options: fix them and run again
EXIT_MEMORY = 3  # memory ran out: run again with more memory (Nextflow retries it with more)
EXIT_SYSTEM = 4  # the system refused a read or write: disk full, permission, missing folder


class ScdefrError(Exception):
    """Bad input, impossible parameters or an unusable environment, explained in one line."""


def exit_status(exc: BaseException) -> int:
    if isinstance(exc, MemoryError) or _is_cuda_out_of_memory(exc):
        return EXIT_MEMORY
    if isinstance(exc, OSError):
        return EXIT_SYSTEM
    return EXIT_USAGE


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line that says what to do."""
    if isinstance(exc, MemoryError) or _is_cuda_out_of_memory(exc):
        return "out of memory: run it with more memory (or fewer cells per batch: --batch-size)"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"no space left on the device{where}: free disk space or write elsewhere"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"permission denied{where}: choose a folder you can write to"
        return f"{exc.strerror or type(exc).__name__}{where}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _is_cuda_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("torch")
