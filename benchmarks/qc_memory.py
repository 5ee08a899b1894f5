"""Peak memory and seconds of reading the counts and of ``scdefr qc``, on inputs from 100,000 to
1M cells with many genes, and on a CELLxGENE-shaped file (X log-normalised, counts in .raw).

Real inputs carry 20,000-30,000 genes of which qc keeps 2,000, so the input's size, not the
output's, decides what a step that copies the input costs. The script simulates ``--cells``
cells x ``--genes`` genes once, then tiles that file along the cells (``--tiles``: 3 gives 3 times
the cells, new cell names) on disk, with bounded memory. Each measurement runs in a fresh
process, which reports its own peak resident memory; run the script with another copy of
``scdefr`` first on the PYTHONPATH to measure that one (``--tag`` tells them apart).

    python benchmarks/qc_memory.py --workdir W --cells 100000 --genes 20000 --tiles 3 10 --cellxgene 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import append_rows

RESULTS_FILE = "qc_memory.csv"

# Runs in the measured process: the step, then the peak resident memory of this program (Linux's
# VmHWM; ru_maxrss would also count what the forked parent held before the exec).
_MEASURED = """
import re, sys
from pathlib import Path
from scdefr import io
from scdefr.cli import main
if sys.argv[1] == "read":
    io.read_counts(sys.argv[2])
elif main(["qc", "--input", sys.argv[2], "--output", sys.argv[3], "--compression", "none", "--threads", "1"]):
    sys.exit(1)
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1e6)
"""


def tiled(base: Path, tiles: int, workdir: Path) -> Path:
    """``base`` repeated ``tiles`` times along the cells, concatenated on disk."""
    import anndata as ad
    from anndata.experimental import concat_on_disk

    target = workdir / f"{base.stem}.x{tiles}.h5ad"
    if tiles == 1 or target.exists():
        return base if tiles == 1 else target
    adata = ad.read_h5ad(base)
    names = adata.obs_names.copy()
    parts = []
    for tile in range(tiles):
        adata.obs_names = [f"t{tile}_{name}" for name in names]
        parts.append(workdir / f"part{tile}.h5ad")
        adata.write_h5ad(parts[-1])
    concat_on_disk([str(part) for part in parts], str(target), max_loaded_elems=50_000_000)
    for part in parts:
        part.unlink()
    return target


def cellxgene_shaped(counts_path: Path, workdir: Path) -> Path:
    """The counts in .raw and log1p(counts per 10,000) in X, as CELLxGENE publishes datasets."""
    import anndata as ad
    import numpy as np
    from scipy import sparse

    target = workdir / f"{counts_path.stem}.cellxgene.h5ad"
    if not target.exists():
        adata = ad.read_h5ad(counts_path)
        adata.raw = adata
        counts = adata.X
        per_cell = np.repeat(np.asarray(counts.sum(axis=1)).ravel() / 1e4, np.diff(counts.indptr))
        data = np.log1p(counts.data / per_cell).astype(np.float32)
        adata.X = sparse.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)
        adata.write_h5ad(target)
    return target


def measure(kind: str, path: Path, workdir: Path) -> dict:
    """Seconds and peak memory of one read or qc, in a fresh process."""
    output = workdir / "measured.qc.h5ad"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, kind, str(path), str(output)], capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - started
    for produced in workdir.glob("measured.qc*"):
        produced.unlink()
    return {"seconds": round(seconds, 1), "peak_gb": round(float(done.stdout.split()[-1]), 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--tiles", type=int, nargs="+", default=[3], help="inputs of tiles x cells, read then qc'd")
    parser.add_argument(
        "--cellxgene", type=int, nargs="*", default=[], help="also read CELLxGENE-shaped files of these tiles"
    )
    parser.add_argument("--keep", action="store_true", help="keep the tiled inputs")
    parser.add_argument("--tag", default="v11_qc_memory")
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    base = args.workdir / f"sim{args.cells}x{args.genes}.h5ad"
    if not base.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "scdefr",
                "simulate",
                "--n-cells",
                str(args.cells),
                "--n-genes",
                str(args.genes),
                "--n-clusters",
                "8",
                "--seed",
                "0",
                "--output",
                str(base),
                "--compression",
                "none",
                "--threads",
                "1",
            ],
            check=True,
        )
    runs = [("qc", tiles, False) for tiles in args.tiles] + [("read", tiles, True) for tiles in args.cellxgene]
    made = set()
    for kind, tiles, cellxgene in runs:
        path = tiled(base, tiles, args.workdir)
        measured_path = cellxgene_shaped(path, args.workdir) if cellxgene else path
        made |= {path, measured_path} - {base}
        row = {
            "tag": args.tag,
            "step": kind,
            "input": "cellxgene" if cellxgene else "counts",
            "n_cells": args.cells * tiles,
            "n_genes": args.genes,
            **measure(kind, measured_path, args.workdir),
        }
        print(row, flush=True)
        append_rows(RESULTS_FILE, [row])
    for path in made if not args.keep else ():
        path.unlink()


if __name__ == "__main__":
    main()
