"""Shared fixtures: small simulated data carried through the real steps, and the shared folder."""

from __future__ import annotations

from pathlib import Path

import logging

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


@pytest.fixture(scope="session")
def sim_counts():
    """400 cells x 300 genes, 4 planted types: raw counts as a user would bring them."""
    from scdefr.simulate import simulate_counts

    return simulate_counts(n_cells=400, n_genes=300, n_clusters=4, seed=0)


@pytest.fixture(scope="session")
def graph_adata(sim_counts):
    """``sim_counts`` after the real qc and graph steps: the training step's input."""
    from scdefr import pp

    adata = pp.qc(sim_counts.copy(), min_genes=0, min_cells=0, max_pct_mito=None, n_top_genes=200)
    pp.build_graph(adata, n_pcs=20, n_neighbors=10, seed=0)
    return adata


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    """The CLI's logging.basicConfig(force=True) binds a handler to a test's captured stderr; drop it
    afterwards so later tests do not log into a closed stream."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(handler)
