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
    """Append result rows to a CSV in benchmarks/results, flushed at once so an interrupted suite
    keeps every finished run. A row with a column the file lacks widens the header (older rows
    get empty cells) rather than losing the value."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / filename
    row_fields = sorted({key for row in rows for key in row})
    if not path.exists():
        _write_rows(path, row_fields, [], rows)
        return path
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        missing = [key for key in row_fields if key not in fields]
        old_rows = list(reader) if missing else None
    if missing:
        _write_rows(path, fields + missing, old_rows, rows)
        return path
    with path.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=fields).writerows(rows)
    return path


def _write_rows(path: Path, fields: list[str], old_rows: list[dict], rows: list[dict]) -> None:
    """Write the whole file under a temporary name, then rename: never half a table."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(old_rows)
        writer.writerows(rows)
    os.replace(partial, path)
