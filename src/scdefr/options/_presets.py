"""Presets: named sets of option values that the calls leaving those options out take."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from ._groups import CommonOptions

# Each preset's option values; a step takes those of its own options. ``paper`` is every choice of the
# paper's code (github.com/DARKpmm/scDEFR), those equal to our defaults included so that it stays the
# paper's when a default changes; docs/usage.md lists them. Its read-out is KMeans on the final
# embedding: the code also scores spectral clustering of the graph and keeps whichever agrees better
# with the true labels, a choice that needs the labels.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        # qc: only cells and genes without counts are dropped; log1p of counts over the median library; 2,000 HVG
        "min_genes": 0,
        "min_counts": 1,
        "max_counts": None,
        "max_pct_mito": 100.0,
        "min_cells": 1,
        "n_top_genes": 2000,
        # graph: exact 10-NN (the cell included) on 50 PCs, kept directed
        "n_pcs": 50,
        "n_neighbors": 10,
        "knn_method": "exact",
        "graph_normalization": "directed",
        # network
        "hidden_dims": (1024, 128, 24),
        "sigma": 0.1,
        "dropout": 0.01,
        "tag_hops": 3,
        "zinb_form": "paper",
        "input_scaling": "none",
        "decoder_layers": "gene_wide",
        # training: 250 + 250 full-batch epochs
        "pretrain_epochs": 250,
        "epochs": 250,
        "lr_pretrain": 5e-5,
        "lr": 1e-8,
        "batch_size": 0,
        "graph_loss": "paper",
        "input_noise": 0.0,
        "cluster_balance": 1.0,
        "weight_rec_pretrain": 1.0,
        "weight_zinb_pretrain": 0.5,
        "weight_rec": 0.3,
        "weight_zinb": 0.1,
        "weight_kl": 0.5,
        "weight_bce_graph": 0.1,
        "weight_bce_ae": 0.1,
        "joint_mode": "eval",
        "joint_optimizer": "fresh",
        "target_gradient": "through",
        "batchnorm_stats": "running",
        # clusters: KMeans with 20 restarts for the centres and the read-out
        "kmeans_n_init": 20,
        "readout": "kmeans",
        "smoothing_steps": 0,
    },
}


def preset_values(preset: str, names) -> dict[str, Any]:
    """Give the values a preset sets for the options among ``names``.

    Parameters
    ----------
    preset
        A preset's name (:data:`PRESETS`), or ``'none'``.
    names
        The option names wanted (those a step or function takes).

    Returns
    -------
    dict of str to object
        The preset's value of each option in ``names`` it sets; empty for ``'none'``.

    Raises
    ------
    ScdefrError
        ``preset`` is no preset's name.
    """
    CommonOptions(preset=preset)
    return {name: value for name, value in PRESETS.get(preset, {}).items() if name in names}


def takes_preset(function):
    """Make ``function(..., preset=NAME)`` take the preset's values for the keyword options the call leaves out.

    The options a call gives win, and ``function`` still receives ``preset``.

    Parameters
    ----------
    function
        A function with a ``preset`` keyword and option keywords named as the options.

    Returns
    -------
    callable
        ``function`` wrapped, with its name, signature and docstring.
    """
    names = set(inspect.signature(function).parameters)

    @functools.wraps(function)
    def call(*args, **kwargs):
        preset = kwargs.get("preset", CommonOptions.preset)
        return function(*args, **{**preset_values(preset, names - set(kwargs)), **kwargs})

    return call
