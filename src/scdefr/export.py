"""The export step: the files people keep from a trained sample.

From a trained AnnData (``obsm['X_scdefr']``, ``obs['scdefr_cluster']``, ``obsm['scdefr_soft']``,
``uns['scdefr']``) it writes, under one prefix:

- ``.h5ad``: everything earlier steps added plus a UMAP of the scDEFR embedding (``obsm['X_umap']``);
- ``.clusters.csv`` (``cell_id,cluster,probability``) and ``.embedding.csv``;
- ``.metrics.json``: cluster sizes, silhouette, and with a label column ARI / NMI / accuracy;
- ``.umap.png``, ``.loss.png``, ``.cluster_sizes.png``;
- MultiQC custom content: ``_mqc.tsv`` general statistics, a cluster-size bar graph, the plots.

Labels are read here and nowhere earlier, only to score the finished clustering.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from ._files import (
    atomic_paths,
    check_compression,
    check_distinct,
    check_name,
    naming,
    write_h5ad_to,
)
from ._progress import Stages
from .errors import ScdefrError
from .options import CommonOptions, ExportOptions

__all__ = ["add_umap", "clusters_table", "compute_metrics", "embedding_table", "export"]

logger = logging.getLogger(__name__)

REQUIRED = {
    "obsm": ("X_scdefr", "scdefr_soft"),
    "obs": ("scdefr_cluster",),
    "uns": ("scdefr",),
}
UMAP_NEIGHBORS_KEY = "scdefr_umap_neighbors"


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


def add_umap(adata, *, seed: int = 0, n_neighbors: int = 15, max_cells: int = ExportOptions.umap_max_cells) -> None:
    """Compute a UMAP of the scDEFR embedding (``obsm['X_scdefr']``) into ``obsm['X_umap']``.

    Its kNN graph is kept under its own key (:data:`UMAP_NEIGHBORS_KEY`) so the graph step's PCA
    neighbours stay untouched. It is searched exactly up to the graph step's limit (scanpy would
    switch to pynndescent from 8,192 cells, and pay its numba compilation again).
    ``uns['scdefr_umap']`` says how many cells were fitted and how many placed.

    Parameters
    ----------
    adata
        Trained AnnData (``obsm['X_scdefr']``); changed in place.
    seed
        Seeds the subsample, the kNN search and the layout.
    n_neighbors
        Neighbours per cell of the UMAP's kNN graph.
    max_cells
        Above this many cells (0: no limit) the layout is fitted on a random subsample of
        ``max_cells`` cells and every other cell is placed among its nearest fitted cells
        (:func:`place_among_neighbours`): a seeded UMAP lays cells out on one thread, and its time
        grows faster than the cells (benchmarks/umap_cost.py).

    Raises
    ------
    ScdefrError
        ``max_cells`` is negative or 1.
    """
    n_cells = adata.n_obs
    if max_cells == 1 or max_cells < 0:
        raise ScdefrError(f"the UMAP needs at least 2 fitted cells, got a limit of {max_cells}")
    if not max_cells or n_cells <= max_cells:
        _fit_umap(adata, seed=seed, n_neighbors=n_neighbors)
        adata.uns["scdefr_umap"] = {"n_fitted": n_cells, "n_placed": 0}
        return

    import anndata

    embedding = np.asarray(adata.obsm["X_scdefr"], dtype=np.float32)

    logger.info(
        "UMAP fitted on %d random cells of %d; the others are placed among their nearest fitted cells",
        max_cells,
        n_cells,
    )
    fitted = np.sort(np.random.default_rng(seed).choice(n_cells, size=max_cells, replace=False))
    placed = np.setdiff1d(np.arange(n_cells), fitted)
    subsample = anndata.AnnData(obs=pd.DataFrame(index=adata.obs_names[fitted]), obsm={"X_scdefr": embedding[fitted]})
    _fit_umap(subsample, seed=seed, n_neighbors=n_neighbors)
    coordinates = np.empty((n_cells, 2), dtype=np.float32)
    coordinates[fitted] = subsample.obsm["X_umap"]
    coordinates[placed] = place_among_neighbours(
        embedding[fitted], subsample.obsm["X_umap"], embedding[placed], n_neighbors=min(n_neighbors, max_cells)
    )
    adata.obsm["X_umap"] = coordinates
    adata.uns["umap"] = subsample.uns["umap"]
    adata.uns["scdefr_umap"] = {"n_fitted": int(max_cells), "n_placed": int(len(placed))}


def _fit_umap(adata, *, seed: int, n_neighbors: int) -> None:
    import scanpy as sc

    from .pp import KNN_TRANSFORMERS, auto_knn_method

    n_neighbors = int(min(n_neighbors, max(2, adata.n_obs - 1)))
    sc.pp.neighbors(
        adata,
        n_neighbors=n_neighbors,
        use_rep="X_scdefr",
        key_added=UMAP_NEIGHBORS_KEY,
        transformer=KNN_TRANSFORMERS[auto_knn_method(adata.n_obs)],
        random_state=seed,
    )
    sc.tl.umap(adata, neighbors_key=UMAP_NEIGHBORS_KEY, random_state=seed)


def place_among_neighbours(reference, reference_layout, query, *, n_neighbors: int = 15) -> np.ndarray:
    """Lay each query cell at the inverse-distance-weighted mean layout of its nearest reference cells.

    umap-learn's ``transform`` also starts new points at a weighted mean of their nearest fitted
    points' positions, then refines them; the refinement is left out because it costs about as much
    per cell as the layout it would save.
    """
    import numba
    from sklearn.neighbors import NearestNeighbors

    # The query cells are searched in parallel, on as many threads as scanpy's kNN and UMAP may use.
    search = NearestNeighbors(n_neighbors=n_neighbors, n_jobs=numba.get_num_threads()).fit(reference)
    distances, nearest = search.kneighbors(query)
    weights = 1.0 / np.maximum(distances, 1e-12)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("qk,qkd->qd", weights, np.asarray(reference_layout)[nearest]).astype(np.float32)


def clusters_table(adata) -> pd.DataFrame:
    """Tabulate each cell's cluster and the soft-assignment probability of that cluster.

    Parameters
    ----------
    adata
        Trained AnnData (``obs['scdefr_cluster']``, ``obsm['scdefr_soft']``).

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``cell_id``, ``cluster`` and ``probability``.
    """
    soft = np.asarray(adata.obsm["scdefr_soft"])
    return pd.DataFrame(
        {
            "cell_id": adata.obs_names.to_numpy(),
            "cluster": adata.obs["scdefr_cluster"].astype(str).to_numpy(),
            "probability": soft.max(axis=1),
        }
    )


def embedding_table(adata) -> pd.DataFrame:
    """Tabulate the scDEFR embedding of each cell.

    Parameters
    ----------
    adata
        Trained AnnData (``obsm['X_scdefr']``).

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``cell_id`` and the embedding dimensions ``scdefr_1..d``.
    """
    z = np.asarray(adata.obsm["X_scdefr"])
    table = pd.DataFrame(z, columns=[f"scdefr_{i + 1}" for i in range(z.shape[1])])
    table.insert(0, "cell_id", adata.obs_names.to_numpy())
    return table


def compute_metrics(adata, label_key: str | None = None, *, seed: int = 0) -> dict:
    """Score the clustering: sizes, silhouette in the embedding and, for evaluation only, agreement with labels.

    Parameters
    ----------
    adata
        Trained AnnData (``obsm['X_scdefr']``, ``obs['scdefr_cluster']``, ``obsm['scdefr_soft']``,
        ``uns['scdefr']``).
    label_key
        ``obs`` column of known labels; cells without a label are left out of the agreement scores.
    seed
        Seeds the silhouette's sample of cells (:func:`scdefr.metrics.silhouette`).

    Returns
    -------
    dict
        JSON-ready: ``n_cells``, ``n_clusters`` (non-empty), ``n_clusters_requested``,
        ``cluster_sizes``, ``silhouette``, ``silhouette_cells``, ``mean_probability``,
        ``n_clusters_choice`` and, with ``label_key``, ``label_key``, ``n_labelled_cells``,
        ``n_labels``, ``ari``, ``nmi`` and ``accuracy`` (:func:`scdefr.metrics.agreement`).

    Raises
    ------
    ScdefrError
        The ``label_key`` column holds no value.
    """
    clusters = adata.obs["scdefr_cluster"].astype(str).to_numpy()
    categories = [str(c) for c in adata.obs["scdefr_cluster"].astype("category").cat.categories]
    sizes = pd.Series(clusters).value_counts().reindex(categories, fill_value=0)
    soft = np.asarray(adata.obsm["scdefr_soft"])
    trained = adata.uns["scdefr"]
    result = {
        "n_cells": int(adata.n_obs),
        "n_clusters": int(sizes.gt(0).sum()),
        "n_clusters_requested": _plain(trained.get("n_clusters", len(categories))),
        "cluster_sizes": {name: int(size) for name, size in sizes.items()},
        "silhouette": metrics.silhouette(adata.obsm["X_scdefr"], clusters, seed=seed),
        "silhouette_cells": int(min(adata.n_obs, metrics.SILHOUETTE_MAX_CELLS)),
        "mean_probability": float(soft.max(axis=1).mean()),
        "n_clusters_choice": _plain(trained.get("n_clusters_choice", {})),
    }
    if label_key is not None:
        labels = adata.obs[label_key]
        known = labels.notna().to_numpy()
        if not known.any():
            raise ScdefrError(f"label column {label_key!r} has no values")
        result["label_key"] = label_key
        result["n_labelled_cells"] = int(known.sum())
        result["n_labels"] = int(labels[known].astype(str).nunique())
        result.update(metrics.agreement(labels[known].astype(str).to_numpy(), clusters[known]))
    return result


def _multiqc_general_stats(sample: str, result: dict) -> str:
    """MultiQC custom content for the General Statistics table: one row for this sample."""
    columns = {
        "cells": ("Cells", "Cells clustered", "{:,.0f}", "Blues"),
        "clusters": ("Clusters", "Number of scDEFR clusters", "{:,.0f}", "Purples"),
        "silhouette": ("Silhouette", "Silhouette of the clusters in the scDEFR embedding (-1..1)", "{:,.3f}", "RdYlGn"),
    }
    values = {"cells": result["n_cells"], "clusters": result["n_clusters"], "silhouette": result["silhouette"]}
    if "ari" in result:
        columns["ari"] = (
            "ARI",
            f"Adjusted Rand index against '{result['label_key']}' (evaluation only)",
            "{:,.3f}",
            "RdYlGn",
        )
        columns["nmi"] = ("NMI", f"Normalised mutual information against '{result['label_key']}'", "{:,.3f}", "RdYlGn")
        values["ari"], values["nmi"] = result["ari"], result["nmi"]
    header = [
        "# id: 'scdefr_general_stats'",
        "# plot_type: 'generalstats'",
        "# headers:",
    ]
    for key, (title, description, fmt, scale) in columns.items():
        header.append(f"#   {key}:")
        for name, value in (("title", title), ("description", description), ("format", fmt), ("scale", scale)):
            header.append(f"#     {name}: {json.dumps(value)}")  # a JSON string is a valid YAML scalar
        if key in ("silhouette", "ari", "nmi"):
            header.append(f"#     min: {-1 if key == 'silhouette' else 0}")
            header.append("#     max: 1")
    row = [sample] + ["" if values[k] is None else _number(values[k]) for k in columns]
    return "\n".join(header + ["\t".join(["Sample", *columns]), "\t".join(row)]) + "\n"


def _multiqc_cluster_sizes(sample: str, result: dict) -> str:
    """MultiQC custom content: a bar graph of this sample's cluster sizes (samples share one plot)."""
    sizes = result["cluster_sizes"]
    header = [
        "# id: 'scdefr_cluster_sizes'",
        "# section_name: 'scDEFR cluster sizes'",
        "# description: 'Cells per scDEFR cluster in each sample.'",
        "# plot_type: 'bargraph'",
        "# pconfig:",
        "#   id: 'scdefr_cluster_sizes_plot'",
        "#   title: 'scDEFR: cells per cluster'",
        "#   ylab: 'Cells'",
    ]
    names = [f"cluster {name}" for name in sizes]
    return "\n".join(header + ["\t".join(["Sample", *names]), "\t".join([sample, *map(str, sizes.values())])]) + "\n"


def output_paths(outdir: str | os.PathLike, prefix: str) -> dict[str, Path]:
    """Every file the export step writes, by role."""
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
        or the counts), to copy into the written h5ad (see :func:`scdefr._files.write_h5ad`).

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
    from . import pl

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
            _number(result["silhouette"]),
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
                "mqc_general_stats": lambda path: path.write_text(_multiqc_general_stats(prefix, result)),
                "mqc_cluster_sizes": lambda path: path.write_text(_multiqc_cluster_sizes(prefix, result)),
                "mqc_umap": lambda path: shutil.copyfile(tmp["umap_png"], path),
                "mqc_loss": lambda path: shutil.copyfile(tmp["loss_png"], path),
                "h5ad": lambda path: write_h5ad_to(adata, path, paths["h5ad"], compression=compression, carry=carry),
            }
            for role, write in writers.items():
                with naming(paths[role]):
                    write(tmp[role])
    logger.info("%s: wrote %d files to %s", prefix, len(paths), outdir)
    return paths


def _number(value) -> str:
    if value is None:
        return "NA"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


def _plain(value):
    """numpy scalars/arrays and h5ad dicts as JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _writable(value):
    """JSON-ready values in a form h5ad can store (no None)."""
    if isinstance(value, dict):
        return {k: _writable(v) for k, v in value.items() if v is not None and v != {}}
    return value
