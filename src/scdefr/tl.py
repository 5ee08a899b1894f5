"""Scanpy-style tools: ``tl.scdefr`` trains and clusters; ``tl.estimate_n_clusters`` picks K without
labels; ``tl.smooth_assignments`` averages soft assignments over the cell graph."""

from __future__ import annotations

import logging
import os

from .clustering import estimate_n_clusters
from .model import SCDEFR
from .options import CommonOptions, RuntimeOptions
from .readout import smooth_assignments

__all__ = ["estimate_n_clusters", "scdefr", "smooth_assignments"]

logger = logging.getLogger(__name__)


def scdefr(
    adata,
    n_clusters: int | str = "auto",
    *,
    key_added: str = "scdefr",
    copy: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    seed: int = 0,
    preset: str = CommonOptions.preset,
    **options,
):
    """Train scDEFR on a graph AnnData and cluster its cells.

    No label column of ``obs`` is read: the number of clusters, the training and the read-out come
    from the counts and the cell graph alone.

    Parameters
    ----------
    adata
        Graph AnnData (the output of ``scdefr graph`` or :func:`scdefr.pp.build_graph`).
    n_clusters
        Number of clusters, or ``'auto'`` (estimated from the pre-trained embedding, never from labels).
    key_added
        Results go to ``obsm['X_<key_added>']`` (the fused embedding z), ``obsm['<key_added>_soft']``
        (the soft assignments, to the learned centres or with ``readout='kmeans'`` to KMeans centres of
        z, averaged over the cell graph), ``obs['<key_added>_cluster']`` (their argmax, categories
        ``'0'..'K-1'`` by size) and ``uns['<key_added>']`` (options, K and how it was chosen, loss
        history, versions, device, seed).
    copy
        Work on a copy of ``adata`` and return it.
    checkpoint_path
        Save the run there at the end of each phase (and every ``checkpoint_every`` epochs).
    resume
        Continue the run saved in this checkpoint; its options win over ``options``, except the
        runtime ones (:class:`~scdefr.options.RuntimeOptions`).
    seed
        Random seed.
    preset
        Takes the options of this preset (:data:`scdefr.options.PRESETS`, e.g. ``'paper'``) that
        ``options`` do not give; recorded in ``uns['<key_added>']['params']``.
    **options
        Options of :class:`~scdefr.model.SCDEFR` (the command line's names, with underscores).

    Returns
    -------
    anndata.AnnData or None
        The AnnData with the results if ``copy``, else ``None`` (the results are written into ``adata``).

    Examples
    --------
    >>> from scdefr import pp, tl
    >>> from scdefr.simulate import simulate_counts
    >>> adata = pp.qc(simulate_counts(n_cells=500, n_genes=300, n_clusters=3), n_top_genes=200)
    >>> pp.build_graph(adata)
    >>> tl.scdefr(adata, n_clusters=3, pretrain_epochs=20, epochs=10)
    >>> adata.obs["scdefr_cluster"].cat.categories.tolist()
    ['0', '1', '2']
    """
    adata = adata.copy() if copy else adata
    if resume:
        runtime = {name: value for name, value in options.items() if name in RuntimeOptions.names()}
        model = SCDEFR.load(resume, adata, **runtime)
    else:
        model = SCDEFR(adata, n_clusters, seed=seed, preset=preset, **options)
    model.fit(checkpoint_path)
    embedding, soft, clusters = model.predict()
    adata.obsm[f"X_{key_added}"] = embedding
    adata.obsm[f"{key_added}_soft"] = soft
    adata.obs[f"{key_added}_cluster"] = clusters
    adata.uns[key_added] = model.summary()
    return adata if copy else None
