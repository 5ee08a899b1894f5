"""Shared pieces of the benchmark scripts: where the data are, how runs are scored and recorded.

Labels (``obs['cell_type']``) are read here only to score finished clusterings; nothing in this
module hands them to preprocessing, training or the choice of the number of clusters.
"""

from __future__ import annotations

import csv
import os
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS_DIR = Path(os.environ.get("SCDEFR_DATASETS", REPO.parent / "shared" / "datasets"))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LABEL_KEY = "cell_type"

# Smallest first: a partial run still covers the most datasets.
DATASETS = (
    "mouse_bladder_2100",
    "mouse_bladder_top2000",
    "paul15",
    "cite_pbmc_top2000",
    "pbmc_10x_top2000",
    "cite_cbmc_top2000",
)
QUICK_DATASETS = ("pbmc_10x_top2000", "mouse_bladder_top2000")
SEEDS = (0, 1, 2)


def dataset_path(name: str) -> Path:
    return DATASETS_DIR / f"{name}.h5ad"


def score(labels_true, labels_pred) -> dict:
    """ARI, NMI and Hungarian accuracy from the project's own metrics module."""
    from scdefr import metrics

    return {
        "ari": metrics.adjusted_rand_index(labels_true, labels_pred),
        "nmi": metrics.normalized_mutual_info(labels_true, labels_pred),
        "acc": metrics.hungarian_accuracy(labels_true, labels_pred),
    }


@contextmanager
def stopwatch():
    """Yields a dict whose 'seconds' is filled in when the block ends."""
    timing = {}
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - start


def append_rows(filename: str, rows: list[dict]) -> Path:
    """Append result rows to a CSV in benchmarks/results (header written once), flushed at once
    so an interrupted suite keeps every finished run."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / filename
    fields = sorted({key for row in rows for key in row})
    new = not path.exists()
    if not new:
        with path.open() as handle:
            fields = next(csv.reader(handle))
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return path
