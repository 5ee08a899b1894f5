"""Progress bars with an ETA for long work (tqdm), on stderr, switched off by ``--quiet``.

``scdefr.settings.progress = False`` turns them off from Python. Where stderr is not a terminal
(Nextflow's task logs) a bar redraws at most every LOG_INTERVAL seconds, so logs stay short.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

LOG_INTERVAL = 30.0


@dataclass
class Settings:
    """Package-wide settings of how work is reported."""

    progress: bool = True


settings = Settings()


def progress(*, total: int, desc: str, unit: str, initial: int = 0):
    """A tqdm bar over ``total`` steps (disabled when ``settings.progress`` is off)."""
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not settings.progress,
        file=sys.stderr,
        mininterval=0.1 if interactive else LOG_INTERVAL,
        dynamic_ncols=interactive,
        leave=interactive,
    )
