"""One exception type for every problem the user can fix, and how each fault ends the command line.

The command line turns them into a one-line message and a non-zero exit status, so nothing below it
prints errors or calls ``sys.exit``.
"""

from __future__ import annotations

import errno
import os
import re

# Exit statuses of the command line (all below 128, which shells and Nextflow keep for signals).
EXIT_USAGE = 2  # bad input or options: fix them and run again
EXIT_MEMORY = 3  # memory ran out: run again with more memory (Nextflow retries it with more)
EXIT_SYSTEM = 4  # the system refused a read or write: disk full, permission, missing folder

# What to do about each way the system refuses a read or a write.
_SYSTEM_ADVICE = {
    errno.ENOSPC: ("no space left on the device", "free disk space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota or write elsewhere"),
    errno.EFBIG: ("file too large", "write where larger files are allowed, or raise the file size limit (ulimit -f)"),
    errno.EACCES: ("permission denied", "fix the permissions, or use files and folders you may read and write"),
    errno.EPERM: ("operation not permitted", "fix the permissions, or use files and folders you may read and write"),
    errno.EROFS: ("read-only file system", "write to a writable folder"),
    errno.EIO: ("input/output error", "check the disk or the network file system, then run it again"),
}
# The errno values that mean the system refused a read or write (exit status 4) rather than bad content.
SYSTEM_REFUSALS = frozenset(_SYSTEM_ADVICE)
# h5py and torch report a failed write with the errno only in their message.
_ERRNO_IN_MESSAGE = re.compile(r"errno = (\d+)|\[Errno (\d+)\]")
# torch's CPU allocator raises RuntimeError, not MemoryError, when it cannot allocate.
_CPU_OUT_OF_MEMORY = ("can't allocate memory", "not enough memory", "cannot allocate memory")


class ScdefrError(Exception):
    """Bad input, impossible parameters or an unusable environment, explained in one line."""


def exit_status(exc: BaseException) -> int:
    if is_out_of_memory(exc):
        return EXIT_MEMORY
    if isinstance(exc, OSError):
        return EXIT_SYSTEM
    return EXIT_USAGE


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line that says what to do."""
    if is_out_of_memory(exc):
        if _is_broken_pool(exc):
            return "a worker process was killed (most often: out of memory): run it with more memory or fewer --threads"
        return "out of memory: run it with more memory (training holds less with a smaller --batch-size)"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in _SYSTEM_ADVICE:
            what, advice = _SYSTEM_ADVICE[exc.errno]
            return f"{what}{where}: {advice}"
        what = (exc.strerror or str(exc) or type(exc).__name__).lower()
        return " ".join(f"{what}{where}: check the path and the file system, then run it again".split())
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError (numpy, scipy), torch's CPU and CUDA allocation failures, or a worker the system killed."""
    if isinstance(exc, MemoryError) or _is_broken_pool(exc):
        return True
    if type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("torch"):
        return True
    return type(exc) is RuntimeError and any(text in str(exc).lower() for text in _CPU_OUT_OF_MEMORY)


def system_error(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """``exc`` as an ``OSError`` naming ``path``, when the system refused a read or write; else None.

    h5py and torch wrap the operating system's error (RuntimeError or an OSError without errno)
    and keep its number only in the message: it is recovered from there.
    """
    number = exc.errno if isinstance(exc, OSError) else None
    if number is None and isinstance(exc, (OSError, RuntimeError)):
        found = _ERRNO_IN_MESSAGE.search(str(exc))
        number = int(next(group for group in found.groups() if group)) if found else None
    if number is None or number == 0:
        return None
    return OSError(number, os.strerror(number), str(path))


def _is_broken_pool(exc: BaseException) -> bool:
    return type(exc).__name__ == "BrokenProcessPool"
