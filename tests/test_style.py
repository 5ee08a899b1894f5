"""The code style the repository keeps: ruff's lint rules and its format (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (make setup installs it)")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    done = subprocess.run(
        [RUFF, *command, "src", "tests", "benchmarks", "bin", "tools"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


# Past this a module holds more than one concern: split it along them (docs/architecture.md lists the modules).
MAX_MODULE_LINES = 400


def test_no_module_of_the_package_is_over_the_line_limit():
    modules = sorted((REPO / "src").rglob("*.py"))
    assert len(modules) > 40, f"only {len(modules)} modules found under src/"
    lengths = {module.relative_to(REPO): len(module.read_text().splitlines()) for module in modules}
    too_long = {str(path): n for path, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"over {MAX_MODULE_LINES} lines: {too_long}"
