"""``scdefr simulate``: ZINB counts with planted cell types (demo data, tests, benchmarks)."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HELP = "simulate UMI counts with planted cell types (labels in obs['cell_type'])"

logger = logging.getLogger(__name__)


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="h5ad file to write")


def main(args: argparse.Namespace) -> None:
    from .._files.h5ad import write_h5ad

    if args.parts == 1:
        adata = _simulate(args)
        write_h5ad(adata, args.output, compression=args.compression)
    else:
        adata = _simulate_in_parts(args, Path(args.output).parent)
    logger.info("wrote %s (%d cells x %d genes)", args.output, adata.n_obs, adata.n_vars)


def _simulate(args: argparse.Namespace, part: tuple[int, int] | None = None):
    from ..simulate import simulate_counts

    return simulate_counts(
        n_cells=args.n_cells,
        n_genes=args.n_genes,
        n_clusters=args.n_clusters,
        seed=args.seed,
        marker_log_fold_change=args.marker_lfc,
        type_proportions=args.type_proportions,
        part=part,
    )


def _write_part(args: argparse.Namespace, index: int, path: Path) -> Path:
    """One slice of the cells, written uncompressed (a worker process's job)."""
    _simulate(args, (index, args.parts)).write_h5ad(path)
    return path


def _simulate_in_parts(args: argparse.Namespace, folder: Path):
    """The slices drawn by worker processes, concatenated on disk, then written once more with the
    annotations and the requested compression: no process holds more than a slice of the counts."""
    import anndata as ad
    import h5py
    from anndata.experimental import concat_on_disk

    from .._files.atomic import scratch_dir
    from .._files.h5ad import write_h5ad
    from ..io import read_step_h5ad

    workers = min(args.parts, args.threads or os.cpu_count() or 1)
    with scratch_dir(folder, prefix=".simulate_") as tmp:
        paths = [tmp / f"part{index}.h5ad" for index in range(args.parts)]
        # spawned, not forked: the parent may already run thread pools
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_write_part, [args] * args.parts, range(args.parts), paths))
        logger.info("simulated %d cells in %d parts; concatenating", args.n_cells, args.parts)
        whole = tmp / "whole.h5ad"
        concat_on_disk([str(path) for path in paths], str(whole), merge="same")
        adata = read_step_h5ad(whole, leave_on_disk=("X",))
        with h5py.File(paths[0], "r") as first:
            parameters = ad.io.read_elem(first["uns/simulation"])
        parameters.pop("part")
        adata.uns["simulation"] = {**parameters, "parts": args.parts}
        write_h5ad(adata, args.output, compression=args.compression, carry=(whole, ("X",)))
    return adata
