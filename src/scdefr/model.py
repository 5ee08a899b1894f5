"""User-facing scDEFR model over a graph AnnData: fit, predict, save, load (scvi-tools style).

The model is transductive: the network holds per-cell fusion weights, so it embeds and clusters
the cells it was fitted on. Clusters come from the model and the cell graph alone (argmax of the
soft assignment Q averaged over the graph); no label column of ``obs`` is ever read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform

import numpy as np
import pandas as pd
import torch

from .errors import ScdefrError
from .nn import SCDEFRModule
from .config import (
    DEFAULT_HIDDEN_DIMS,
    DEFAULT_INPUT_SCALING,
    DEFAULT_LEIDEN_RESOLUTION,
    DEFAULT_N_CLUSTERS_METHOD,
    DEFAULT_SMOOTHING_STEPS,
    INPUT_SCALINGS,
    N_CLUSTERS_METHODS,
    ZINB_FORMS,
    check_smoothing_steps,
)
from .training import (
    CellGraph,
    TrainingConfig,
    TrainingPlan,
    TrainingState,
    load_checkpoint,
    module_from_checkpoint,
)

logger = logging.getLogger(__name__)

# Settings of the run itself (where and how it runs), not of the model: a resumed run may change them.
RUNTIME_OPTIONS = ("device", "amp", "log_every", "checkpoint_every")


class SCDEFR:
    """scDEFR clustering of the cells of one graph AnnData (output of ``scdefr graph``).

    ``n_clusters`` is a number, or ``'auto'``: estimated without labels from the pre-trained
    embedding by :func:`scdefr.tl.estimate_n_clusters` (``n_clusters_method``, ``resolution``,
    ``max_clusters``). Clusters are the argmax of Q averaged over ``smoothing_steps`` steps of
    the cell graph (:func:`scdefr.tl.smooth_assignments`). The network options are ``hidden_dims``, ``sigma``, ``dropout``, ``hops``
    and ``zinb_form``; ``input_scaling`` says what the encoders see of X (``'scale'``: each gene
    standardised, ``'none'``: X as it is, as the paper's code). Every other keyword is a
    :class:`scdefr.training.TrainingConfig` field (epochs, learning rates, loss weights, batch
    size, seed, device, amp, ...).
    """

    def __init__(
        self,
        adata,
        n_clusters: int | str = "auto",
        *,
        n_clusters_method: str = DEFAULT_N_CLUSTERS_METHOD,
        resolution: float = DEFAULT_LEIDEN_RESOLUTION,
        max_clusters: int = 30,
        smoothing_steps: int = DEFAULT_SMOOTHING_STEPS,
        hidden_dims: tuple[int, ...] | list[int] = DEFAULT_HIDDEN_DIMS,
        sigma: float = 0.1,
        dropout: float = 0.01,
        hops: int = 3,
        zinb_form: str = "counts",
        input_scaling: str = DEFAULT_INPUT_SCALING,
        **training,
    ):
        unknown = set(training) - {f.name for f in dataclasses.fields(TrainingConfig)}
        if unknown:
            raise TypeError(f"unknown scDEFR option(s): {', '.join(sorted(unknown))}")
        self.config = TrainingConfig(**training)
        self.config.validate()
        self.options = {
            "n_clusters": _check_n_clusters(n_clusters, adata.n_obs),
            "n_clusters_method": n_clusters_method,
            "resolution": float(resolution),
            "max_clusters": int(max_clusters),
            "smoothing_steps": check_smoothing_steps(smoothing_steps),
            "input_scaling": input_scaling,
        }
        _check_options(self.options, hidden_dims, sigma, dropout, hops, zinb_form)
        self.adata = adata
        self.graph = CellGraph.from_anndata(adata, zinb_form, input_scaling)
        torch.manual_seed(self.config.seed)
        self.module = SCDEFRModule(
            n_genes=self.graph.n_genes,
            n_cells=self.graph.n_cells,
            hidden_dims=hidden_dims,
            sigma=sigma,
            dropout=dropout,
            hops=hops,
            zinb_form=zinb_form,
        )
        self.state = TrainingState()
        self._optimizer_state: dict | None = None
        self._plan: TrainingPlan | None = None

    # --- training ------------------------------------------------------------------------------
    def _choose_n_clusters(self, embedding: np.ndarray) -> tuple[int, dict]:
        if self.options["n_clusters"] != "auto":
            return int(self.options["n_clusters"]), {"method": "given"}
        from .tl import estimate_n_clusters

        return estimate_n_clusters(
            embedding,
            method=self.options["n_clusters_method"],
            resolution=self.options["resolution"],
            max_clusters=self.options["max_clusters"],
            seed=self.config.seed,
        )

    def _training_plan(self) -> TrainingPlan:
        if self._plan is None:
            self._plan = TrainingPlan(
                self.module,
                self.graph,
                self.config,
                self._choose_n_clusters,
                state=self.state,
                optimizer_state=self._optimizer_state,
                extra={"model_options": self.options, "cells": _fingerprint(self.adata)},
            )
        return self._plan

    def fit(self, checkpoint_path: str | os.PathLike | None = None) -> "SCDEFR":
        """Pre-train, initialise the centres, train jointly (continuing a loaded, unfinished run).

        With ``checkpoint_path`` the run is saved there every ``checkpoint_every`` epochs and at the
        end of each phase; the final file is the fitted model (same format as :meth:`save`).
        """
        self.state = self._training_plan().train(checkpoint_path)
        return self

    @property
    def is_fitted(self) -> bool:
        return self.state.phase == "done"

    # --- results -------------------------------------------------------------------------------
    def predict(self) -> tuple[np.ndarray, np.ndarray, pd.Categorical]:
        """Embedding z, soft assignments (Q averaged over the graph), and their argmax as
        categories ``'0'..'K-1'``."""
        from .tl import smooth_assignments

        if not self.is_fitted:
            raise ScdefrError("the model is not fitted yet: call fit() first")
        embedding, q = self._training_plan().embed()
        steps = self.options["smoothing_steps"]
        soft = smooth_assignments(q, self.graph.adjacency, steps)
        labels = soft.argmax(axis=1)
        empty = soft.shape[1] - len(np.unique(labels))
        if empty:
            logger.warning("%d of the %d clusters hold no cell (argmax of Q after %d smoothing steps)", empty, soft.shape[1], steps)
        clusters = pd.Categorical(labels.astype(str), categories=[str(k) for k in range(soft.shape[1])])
        return embedding, soft, clusters

    def summary(self) -> dict:
        """Parameters, K and how it was chosen, loss history, versions, device: h5ad-writable."""
        from importlib.metadata import version

        from . import __version__

        plan = self._training_plan()
        history = {
            phase: {name: np.asarray(values, dtype=np.float64) for name, values in terms.items()}
            for phase, terms in self.state.history.items()
        }
        return {
            "params": {
                "model": _writable(self.module.config),
                "training": _writable(dataclasses.asdict(self.config)),
                "n_clusters": str(self.options["n_clusters"]),
                "n_clusters_method": self.options["n_clusters_method"],
                "resolution": self.options["resolution"],
                "max_clusters": self.options["max_clusters"],
                "smoothing_steps": self.options["smoothing_steps"],
                "input_scaling": self.options["input_scaling"],
                "batch_size_used": int(plan.batch_size),
                "pretrain_epochs_used": int(plan.pretrain_epochs),
                "epochs_used": int(plan.epochs),
            },
            "n_clusters": int(self.module.config["n_clusters"]),
            "n_clusters_choice": _writable(self.state.n_clusters_info),
            "cluster_assignment": (
                "argmax of the soft assignment Q (Student's t kernel to the learned centres), averaged over "
                f"{self.options['smoothing_steps']} random-walk steps of the cell graph"
            ),
            "history": history,
            "versions": {
                "scdefr": __version__,
                "torch": str(torch.__version__),
                "numpy": version("numpy"),
                "scanpy": version("scanpy"),
                "anndata": version("anndata"),
                "scikit-learn": version("scikit-learn"),
                "python": platform.python_version(),
            },
            "device": str(plan.device),
            "seed": int(self.config.seed),
        }

    # --- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the run (weights, configuration, phase, optimizer, history) atomically to ``path``."""
        self._training_plan().save_checkpoint(path)

    @classmethod
    def load(cls, path: str | os.PathLike, adata, **runtime) -> "SCDEFR":
        """A model (finished, or to be resumed with :meth:`fit`) from a checkpoint and its AnnData.

        ``runtime`` may change where and how the run goes on (``device``, ``amp``, ``log_every``,
        ``checkpoint_every``); everything else comes from the checkpoint.
        """
        unknown = set(runtime) - set(RUNTIME_OPTIONS)
        if unknown:
            raise TypeError(f"load() only takes {', '.join(RUNTIME_OPTIONS)}, not {', '.join(sorted(unknown))}")
        checkpoint = load_checkpoint(path)
        extra = checkpoint.get("extra", {})
        if extra.get("cells") != _fingerprint(adata):
            raise ScdefrError(f"checkpoint {path} was trained on other cells or genes than this input")
        model = cls.__new__(cls)
        model.config = TrainingConfig(**{**checkpoint["training_config"], **runtime})
        model.config.validate()
        # checkpoints written before the smoothing existed labelled by argmax Q itself
        model.options = {"smoothing_steps": 0, **extra["model_options"]}
        model.adata = adata
        model.graph = CellGraph.from_anndata(
            adata, checkpoint["module_config"]["zinb_form"], model.options["input_scaling"]
        )
        model.module = module_from_checkpoint(checkpoint)
        model.state = TrainingState(
            phase=checkpoint["phase"],
            epoch=int(checkpoint["epoch"]),
            history=checkpoint["history"],
            n_clusters_info=checkpoint["n_clusters_info"],
            cluster_frequencies=checkpoint.get("cluster_frequencies", {}),
        )
        model._optimizer_state = checkpoint["optimizer"] or None
        model._plan = None
        logger.info("loaded %s: phase %s, epoch %d", path, model.state.phase, model.state.epoch)
        return model


def _check_n_clusters(n_clusters, n_cells: int):
    if n_clusters == "auto":
        return "auto"
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise ScdefrError(f"number of clusters must be a positive integer or 'auto', got {n_clusters!r}")
    if n_clusters > n_cells:
        raise ScdefrError(f"number of clusters ({n_clusters}) exceeds the number of cells ({n_cells})")
    return int(n_clusters)


def _check_options(options: dict, hidden_dims, sigma, dropout, hops, zinb_form) -> None:
    if options["n_clusters_method"] not in N_CLUSTERS_METHODS:
        raise ScdefrError(f"n_clusters method must be one of {', '.join(N_CLUSTERS_METHODS)}, got {options['n_clusters_method']!r}")
    if not options["resolution"] > 0:
        raise ScdefrError(f"resolution must be > 0, got {options['resolution']}")
    if options["max_clusters"] < 2:
        raise ScdefrError(f"max clusters must be >= 2, got {options['max_clusters']}")
    if len(hidden_dims) < 2 or any(int(d) < 1 for d in hidden_dims):
        raise ScdefrError(f"hidden dims must be at least two positive widths, got {list(hidden_dims)}")
    if not 0.0 <= sigma <= 1.0:
        raise ScdefrError(f"sigma must be in [0, 1], got {sigma}")
    if not 0.0 <= dropout < 1.0:
        raise ScdefrError(f"dropout must be in [0, 1), got {dropout}")
    if hops < 0:
        raise ScdefrError(f"TAGConv hops must be >= 0, got {hops}")
    if options["input_scaling"] not in INPUT_SCALINGS:
        raise ScdefrError(f"input scaling must be one of {', '.join(INPUT_SCALINGS)}, got {options['input_scaling']!r}")
    if zinb_form not in ZINB_FORMS:
        raise ScdefrError(f"zinb form must be one of {', '.join(ZINB_FORMS)}, got {zinb_form!r}")


def _fingerprint(adata) -> str:
    """Identifies the cells and genes a model belongs to (their names, in order)."""
    digest = hashlib.sha1()
    for names in (adata.obs_names, adata.var_names):
        digest.update("\x1f".join(map(str, names)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def _writable(value):
    """Make a value h5ad-writable: ``None`` becomes ``'none'``, tuples become lists."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return {str(k): _writable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_writable(v) for v in value]
    return value

