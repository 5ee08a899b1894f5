"""Seconds and size of writing (and reading back) an h5ad with each compression the steps could use.

Every step writes its AnnData compressed (`scdefr._files.h5ad.write_h5ad`); at 100,000 cells the
writes took a fifth of the CPU steps on the GPU machine. This script
writes each given file with gzip at h5py's default level (4), gzip at level 1, h5py's LZF and
without compression, then reads each copy back.

    python benchmarks/write_cost.py SWEEP/sim100000/graph/sim100000.graph.h5ad --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import append_rows

RESULTS_FILE = "write_cost.csv"
SETTINGS = {
    "gzip4": {"compression": "gzip"},
    "gzip1": {"compression": "gzip", "compression_opts": 1},
    "lzf": {"compression": "lzf"},
    "none": {"compression": None},
}


def main(argv=None):
    import anndata

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("h5ad", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--tag", default="v9_write_cost")
    args = parser.parse_args(argv)

    for path in args.h5ad:
        adata = anndata.read_h5ad(path)
        with tempfile.TemporaryDirectory(dir=Path(path).parent) as folder:
            for repeat in range(args.repeats):
                for name in args.settings:
                    options = SETTINGS[name]
                    copy = Path(folder) / f"{name}.h5ad"
                    started = time.perf_counter()
                    adata.write_h5ad(copy, **options)
                    written = time.perf_counter()
                    anndata.read_h5ad(copy)
                    row = {
                        "tag": args.tag,
                        "input": path,
                        "n_cells": adata.n_obs,
                        "setting": name,
                        "repeat": repeat,
                        "write_s": round(written - started, 2),
                        "read_s": round(time.perf_counter() - written, 2),
                        "size_mb": round(copy.stat().st_size / 1e6, 1),
                    }
                    print(row, flush=True)
                    append_rows(RESULTS_FILE, [row])


if __name__ == "__main__":
    main()
