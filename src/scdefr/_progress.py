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


class Stages:
    """A bar over the named stages of a step: the stage running is shown beside the elapsed time."""

    def __init__(self, desc: str, names: list[str]):
        self.names = names
        self.bar = progress(total=len(names), desc=desc, unit="stage")
        self.current: str | None = None

    def __call__(self, name: str) -> None:
        """Mark the previous stage done and ``name`` (one of the declared names) running."""
        if self.current is not None:
            self.bar.update(1)
        self.current = name
        self.bar.set_postfix_str(name)

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.current is not None:
            self.bar.update(1)
        self.bar.close()
