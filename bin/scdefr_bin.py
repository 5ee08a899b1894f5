"""What the bin/scdefr_<step>.py scripts share (Nextflow puts bin/ on the tasks' PATH).

The scdefr package is the installed one (the step images install it), or else the pipeline's own
src/ beside this bin/ folder (the conda environments hold only public packages).
"""

from __future__ import annotations

import sys
from pathlib import Path


def import_scdefr():
    try:
        import scdefr
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        import scdefr
    return scdefr


def run(step: str, argv: list[str]) -> int:
    """``scdefr <step> ARGV``; ``--version`` alone prints the package version, for the versions topic."""
    scdefr = import_scdefr()
    if argv == ["--version"]:
        print(f"scdefr {scdefr.__version__}")
        return 0
    from scdefr.cli import main

    return main([step, *argv])
