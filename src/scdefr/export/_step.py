"""The export step: checks everything first, then writes every file under a temporary name; all appear together."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from .._files.atomic import atomic_paths, naming
from .._files.h5ad import check_compression, write_h5ad_to
from .._files.paths import check_distinct, check_name
from .._progress import Stages
from ..errors import ScdefrError
from ..options import CommonOptions, ExportOptions
from ._multiqc import multiqc_cluster_sizes, multiqc_general_stats, number_text
from ._tables import clusters_table, compute_metrics, embedding_table
from ._umap import add_umap

# Logged as the export step, whichever of its modules logs.
logger = logging.getLogger(__package__)

REQUIRED = {
    "obsm": ("X_scdefr", "scdefr_soft"),
    "obs": ("scdefr_cluster",),
    "uns": ("scdefr",),
}


def _check_trained(adata, label_key: str | None = None) -> None:
    """Raise :class:`ScdefrError` unless ``adata`` has what ``scdefr train`` writes (and ``label_key``)."""
    missing = [f"{slot}['{key}']" for slot, keys in REQUIRED.items() for key in keys if key not in getattr(adata, slot)]
    if missing:
        raise ScdefrError(
            f"input is not a trained scDEFR file (missing {', '.join(missing)}): run 'scdefr train' first"
        )
    if adata.n_obs == 0:
        raise ScdefrError("input has no cells")
    soft = np.asarray(adata.obsm["scdefr_soft"])
    if not np.isfinite(soft).all() or not np.isfinite(np.asarray(adata.obsm["X_scdefr"])).all():
        raise ScdefrError("input's embedding or soft assignments contain NaN or infinite values")
    if label_key is not None and label_key not in adata.obs:
        columns = ", ".join(map(str, adata.obs.columns)) or "none"
        raise ScdefrError(f"label column {label_key!r} is not in the input's obs (columns: {columns})")


def output_paths(outdir: str | os.PathLike, prefix: str) -> dict[str, Path]:
    """Name every file the export step writes, by role.

    Parameters
    ----------
    outdir
        Folder of the files.
    prefix
        Start of every file name, usually the sample's name.

    Returns
    -------
    dict of str to pathlib.Path
        ``h5ad``, ``clusters``, ``embedding``, ``metrics``, the plots (``umap_png``, ``loss_png``,
        ``sizes_png``) and the MultiQC content (``mqc_general_stats``, ``mqc_cluster_sizes``, ``mqc_umap``,
        ``mqc_loss``), each a path under ``outdir``.
    """
    folder = Path(outdir)
    return {
        "h5ad": folder / f"{prefix}.h5ad",
        "clusters": folder / f"{prefix}.clusters.csv",
        "embedding": folder / f"{prefix}.embedding.csv",
        "metrics": folder / f"{prefix}.metrics.json",
        "umap_png": folder / f"{prefix}.umap.png",
        "loss_png": folder / f"{prefix}.loss.png",
        "sizes_png": folder / f"{prefix}.cluster_sizes.png",
        "mqc_general_stats": folder / f"{prefix}_mqc.tsv",
        "mqc_cluster_sizes": folder / f"{prefix}_cluster_sizes_mqc.tsv",
        "mqc_umap": folder / f"{prefix}_umap_mqc.png",
        "mqc_loss": folder / f"{prefix}_loss_mqc.png",
    }


def export(
    adata,
    outdir: str | os.PathLike,
    prefix: str,
    *,
    label_key: str | None = None,
    seed: int = 0,
    umap_max_cells: int = ExportOptions.umap_max_cells,
    compression: str = CommonOptions.compression,
    carry: tuple[str | os.PathLike, tuple[str, ...]] | None = None,
) -> dict[str, Path]:
    """Write every export file for one sample: h5ad, tables, metrics, plots and MultiQC content.

    Everything is checked before the first file is written (an output that is the ``carry`` input
    is refused), and the files appear under their final names together, once all are complete.

    Parameters
    ----------
    adata
        Trained AnnData (as :func:`scdefr.tl.scdefr` leaves it); gains ``obsm['X_umap']`` and
        ``uns['scdefr_export']`` (the metrics of :func:`compute_metrics`).
    outdir
        Folder of the files (made if missing).
    prefix
        Start of every file name, usually the sample's name.
    label_key
        ``obs`` column of known labels: scores the clusters and colours a second UMAP panel. Read
        here only, never by training.
    seed
        Seeds the UMAP and the silhouette's sample.
    umap_max_cells
        Cells the UMAP is fitted on at most (see :func:`add_umap`).
    compression
        Compression of the written h5ad: ``'gzip'`` or ``'none'``.
    carry
        The h5ad ``adata`` was read from and the matrices it was read without (nothing here uses X
        or the counts), to copy into the written h5ad (see :func:`scdefr._files.h5ad.write_h5ad`).

    Returns
    -------
    dict of str to pathlib.Path
        The written files by role (the keys of :func:`output_paths`).

    Raises
    ------
    ScdefrError
        ``adata`` is not trained, ``label_key`` is not in ``obs``, an option is invalid, or an output
        path is taken by an input or cannot be written.

    Examples
    --------
    With ``adata`` trained by :func:`scdefr.tl.scdefr`:

    >>> from scdefr import export
    >>> paths = export.export(adata, "results/export", "sample1", label_key="cell_type")
    >>> paths["clusters"]
    PosixPath('results/export/sample1.clusters.csv')
    """
    from .. import pl

    _check_trained(adata, label_key)
    check_compression(compression)
    check_name(prefix, "prefix")
    paths = output_paths(outdir, prefix)
    inputs = {"the input": carry[0]} if carry is not None else {}
    check_distinct(inputs, [("export file", path) for path in paths.values()])  # and outdir can be made

    with Stages("export", ["metrics", "UMAP", "files"]) as stage:
        stage("metrics")
        result = compute_metrics(adata, label_key, seed=seed)
        logger.info(
            "%s: %d cells in %d clusters, silhouette %s%s",
            prefix,
            result["n_cells"],
            result["n_clusters"],
            number_text(result["silhouette"]),
            f", ARI {result['ari']:.3f}, NMI {result['nmi']:.3f}, accuracy {result['accuracy']:.3f}"
            if label_key
            else "",
        )
        stage("UMAP")
        logger.info("%s: UMAP of the scDEFR embedding", prefix)
        add_umap(adata, seed=seed, max_cells=umap_max_cells)
        adata.uns["scdefr_export"] = _writable({k: v for k, v in result.items() if v is not None})

        k = result["n_clusters"]
        keys, titles = ["scdefr_cluster"], [f"scDEFR clusters (K = {k})"]
        if label_key is not None:
            keys.append(label_key)
            titles.append(f"{label_key} (ARI {result['ari']:.3f}, NMI {result['nmi']:.3f})")
        stage("files")
        # Every file is written under a temporary name; they all appear together, or none does.
        with atomic_paths(list(paths.values())) as temporaries:
            tmp = dict(zip(paths, temporaries, strict=True))
            writers = {
                "clusters": lambda path: clusters_table(adata).to_csv(path, index=False, float_format="%.6g"),
                "embedding": lambda path: embedding_table(adata).to_csv(path, index=False, float_format="%.6g"),
                "metrics": lambda path: path.write_text(json.dumps({"sample": prefix, **result}, indent=2) + "\n"),
                "umap_png": lambda path: pl.embedding(
                    adata, keys, titles=titles, suptitle=f"{prefix}: UMAP of the scDEFR embedding", save=path
                ),
                "loss_png": lambda path: pl.loss_curves(
                    adata.uns["scdefr"].get("history", {}), title=f"{prefix}: training losses", save=path
                ),
                "sizes_png": lambda path: pl.cluster_sizes(adata, label_key=label_key, save=path),
                "mqc_general_stats": lambda path: path.write_text(multiqc_general_stats(prefix, result)),
                "mqc_cluster_sizes": lambda path: path.write_text(multiqc_cluster_sizes(prefix, result)),
                "mqc_umap": lambda path: shutil.copyfile(tmp["umap_png"], path),
                "mqc_loss": lambda path: shutil.copyfile(tmp["loss_png"], path),
                "h5ad": lambda path: write_h5ad_to(adata, path, paths["h5ad"], compression=compression, carry=carry),
            }
            for role, write in writers.items():
                with naming(paths[role]):
                    write(tmp[role])
    logger.info("%s: wrote %d files to %s", prefix, len(paths), outdir)
    return paths


def _writable(value):
    """JSON-ready values in a form h5ad can store (no None)."""
    if isinstance(value, dict):
        return {k: _writable(v) for k, v in value.items() if v is not None and v != {}}
    return value
