"""MultiQC custom content of one sample: a General Statistics row and a cluster-size bar graph."""

from __future__ import annotations

import json

import numpy as np


def multiqc_general_stats(sample: str, result: dict) -> str:
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
    row = [sample] + ["" if values[k] is None else number_text(values[k]) for k in columns]
    return "\n".join(header + ["\t".join(["Sample", *columns]), "\t".join(row)]) + "\n"


def multiqc_cluster_sizes(sample: str, result: dict) -> str:
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


def number_text(value) -> str:
    """A value as the log and MultiQC show it: ``NA`` for none, integers whole, others to six significant digits."""
    if value is None:
        return "NA"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"
