"""Shared fixtures: small simulated data carried through the real steps, and the shared folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The real labelled datasets beside the checkout; tests using them skip where they are absent."""
    folder = SHARED / "datasets"
    if not folder.is_dir():
        pytest.skip(f"shared datasets not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def nf_core_schemas_dir() -> Path:
    folder = SHARED / "nf-core-schemas"
    if not folder.is_dir():
        pytest.skip(f"nf-core schemas not found at {folder}")
    return folder


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    """The CLI's logging.basicConfig(force=True) binds a handler to a test's captured stderr; drop it
    afterwards so later tests do not log into a closed stream."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(handler)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Test tensors are small: one thread is faster on a shared 2-core machine and identical run to run."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
