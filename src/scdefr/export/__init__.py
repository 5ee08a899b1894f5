"""The export step: the files people keep from a trained sample.

From a trained AnnData (``obsm['X_scdefr']``, ``obs['scdefr_cluster']``, ``obsm['scdefr_soft']``,
``uns['scdefr']``) it writes, under one prefix:

- ``.h5ad``: everything earlier steps added plus a UMAP of the scDEFR embedding (``obsm['X_umap']``);
- ``.clusters.csv`` (``cell_id,cluster,probability``) and ``.embedding.csv``;
- ``.metrics.json``: cluster sizes, silhouette, and with a label column ARI / NMI / accuracy;
- ``.umap.png``, ``.loss.png``, ``.cluster_sizes.png``;
- MultiQC custom content: ``_mqc.tsv`` general statistics, a cluster-size bar graph, the plots.

Labels are read here and nowhere earlier, only to score the finished clustering.

The step itself is in ``_step``; ``_umap``, ``_tables`` and ``_multiqc`` make its parts.
"""

from ._step import export, output_paths
from ._tables import clusters_table, compute_metrics, embedding_table
from ._umap import UMAP_NEIGHBORS_KEY, add_umap, place_among_neighbours

__all__ = [
    "UMAP_NEIGHBORS_KEY",
    "add_umap",
    "clusters_table",
    "compute_metrics",
    "embedding_table",
    "export",
    "output_paths",
    "place_among_neighbours",
]
