"""The user-facing scDEFR model over a graph AnnData: fit, predict, save, load (as scvi-tools' models).

The model is transductive: the network holds per-cell fusion weights, so it embeds and clusters the
cells it was fitted on. Clusters come from the model and the cell graph alone; no label column of
``obs`` is ever read.
"""

from __future__ import annotations

import logging
import os
import platform

import numpy as np
import pandas as pd
import torch

from . import checkpoint
from ._device import resolve_device
from .clustering import compare_given_k, estimate_n_clusters, kmeans_centres
from .data import CellGraph, make_batch, resolve_batch_size
from .errors import ScdefrError
from .nn import SCDEFRModule, soft_assignment
from .options import MODEL_OPTIONS, CommonOptions, GraphOptions, RuntimeOptions, model_option_names, preset_values
from .plan import TrainingPlan, TrainingState, resolve_epochs
from .readout import (
    hard_clusters,
    most_modular_split_and_merge,
    small_clusters_note,
    smooth_assignments,
)

__all__ = ["SCDEFR"]

logger = logging.getLogger(__name__)

# What uns['scdefr']['cluster_assignment'] says of each read-out.
READOUTS = {
    "centres": "argmax of the soft assignment Q (Student's t kernel) to the learned centres, averaged over "
    "{steps} random-walk steps of the cell graph",
    "kmeans": "argmax of the soft assignment (Student's t kernel) to KMeans centres of z, averaged over "
    "{steps} random-walk steps of the cell graph",
    "merge": "KMeans of {embeddings} into {factor} x K pieces merged over the cell graph down to K (of "
    "{restarts} runs from different KMeans seeds per embedding, the one of highest modularity on the graph), "
    "averaged over {steps} random-walk steps of the graph (none: the merged clusters, and as soft assignment "
    "the share of each cell's graph neighbours in each cluster)",
}

MERGED_EMBEDDINGS = {"final": "z", "both": "z and of the pre-trained embedding"}


class SCDEFR:
    """scDEFR clustering of the cells of one graph AnnData (the output of ``scdefr graph``).

    Parameters
    ----------
    adata
        Graph AnnData: X, ``layers['counts']``, ``obs['size_factors']``, ``obsp['scdefr_adjacency']``.
    n_clusters
        Number of clusters, or ``'auto'``: estimated without labels from the pre-trained embedding
        (:func:`scdefr.tl.estimate_n_clusters`).
    seed
        Random seed of the initialisation, the batches and the centres.
    preset
        Takes the options of this preset (:data:`scdefr.options.PRESETS`) that ``options`` do not give.
    **options
        Any field of :class:`~scdefr.options.ClusterOptions`, :class:`~scdefr.options.NetworkOptions`,
        :class:`~scdefr.options.TrainingOptions` or :class:`~scdefr.options.RuntimeOptions`, by the
        same name as the command-line option (``tag_hops`` for ``--tag-hops``).

    Raises
    ------
    TypeError
        An unknown option.
    ScdefrError
        An option is out of range, ``n_clusters`` exceeds the cells, or ``adata`` is not a graph AnnData.

    Examples
    --------
    With ``adata`` the output of :func:`scdefr.pp.build_graph`:

    >>> from scdefr.model import SCDEFR
    >>> model = SCDEFR(adata, n_clusters="auto", seed=0).fit("run.pt")
    >>> embedding, soft, clusters = model.predict()
    >>> again = SCDEFR.load("run.pt", adata)
    """

    def __init__(
        self, adata, n_clusters: int | str = "auto", *, seed: int = 0, preset: str = CommonOptions.preset, **options
    ):
        unknown = set(options) - model_option_names()
        if unknown:
            raise TypeError(f"unknown scDEFR option(s): {', '.join(sorted(unknown))}")
        values = {**preset_values(preset, model_option_names()), "n_clusters": n_clusters, **options}
        self.clusters, self.network, self.training, self.runtime = (group.pick(values) for group in MODEL_OPTIONS)
        common = CommonOptions(seed=seed, preset=preset)
        self.seed, self.preset = common.seed, common.preset
        if self.clusters.n_clusters != "auto" and self.clusters.n_clusters > adata.n_obs:
            raise ScdefrError(f"n_clusters ({self.clusters.n_clusters}) exceeds the number of cells ({adata.n_obs})")
        self.device = resolve_device(self.runtime.device)
        self.adata = adata
        self.graph = CellGraph.from_anndata(adata, self.network.zinb_form, self.network.input_scaling)
        _warn_if_graph_differs(adata, self.preset)
        torch.manual_seed(self.seed)
        self.module = SCDEFRModule(self.graph.n_genes, self.graph.n_cells, self.network)
        self.state = TrainingState()
        self._optimizer_state: dict | None = None
        self.merge_choice: dict = {}  # predict() with readout merge: the embedding whose clusters it kept
        self.small_clusters_note: str | None = None  # predict(): clusters of a few cells, if any

    # --- training --------------------------------------------------------------------------------
    def fit(self, checkpoint_path: str | os.PathLike | None = None) -> SCDEFR:
        """Pre-train, place the centres, train jointly (continuing a loaded, unfinished run).

        Parameters
        ----------
        checkpoint_path
            Save the run there every ``checkpoint_every`` epochs and at the end of each phase; the
            final file is the fitted model (the same format as :meth:`save`).

        Returns
        -------
        SCDEFR
            The model itself, fitted.
        """
        plan = TrainingPlan(
            self.module,
            self.graph,
            self.training,
            self.runtime,
            self.seed,
            self.device,
            self._init_centres,
            self._payload,
            self.state,
            self._optimizer_state,
        )
        self.state = plan.train(checkpoint_path)
        self._optimizer_state = None
        return self

    def _init_centres(self, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """K (given, or estimated from the embedding) and its KMeans centres on the pre-trained embedding."""
        options = self.clusters
        if options.n_clusters == "auto":
            k, info = estimate_n_clusters(
                embedding,
                method=options.n_clusters_method,
                resolution=options.leiden_resolution,
                max_clusters=options.max_clusters,
                seed=self.seed,
            )
        else:  # auto's count beside a given K, so that a K far from the groups the cells form is said
            k = int(options.n_clusters)
            info = {"method": "given", **compare_given_k(embedding, k, options.leiden_resolution, self.seed)}
        centres, labels = kmeans_centres(embedding, k, n_init=options.kmeans_n_init, seed=self.seed)
        logger.info("cluster centres initialised: K=%d (%s)", k, info["method"])
        return centres, labels, {"n_clusters": int(k), **info}

    @property
    def is_fitted(self) -> bool:
        """Whether both training phases are done."""
        return self.state.phase == "done"

    # --- results ---------------------------------------------------------------------------------
    def predict(self) -> tuple[np.ndarray, np.ndarray, pd.Categorical]:
        """Embed and cluster the cells the model was fitted on.

        Clusters of fewer than :data:`~scdefr.readout.SMALL_CLUSTER_CELLS` cells are named in a warning and in
        ``small_clusters_note`` (reset on every call), which :meth:`summary` lists in ``notes``.

        Returns
        -------
        embedding : numpy.ndarray
            The fused embedding z, cells x its size.
        soft : numpy.ndarray
            The soft assignments (to the learned centres, Q, or with ``readout='kmeans'`` to KMeans
            centres of z, or with ``readout='merge'`` the merged clusters as one-hot rows) averaged over
            ``smoothing_steps`` random-walk steps of the cell graph (:func:`scdefr.tl.smooth_assignments`);
            with ``readout='merge'`` and no smoothing, the share of each cell's graph neighbours in each
            cluster. Columns in cluster order.
        clusters : pandas.Categorical
            Each cell's cluster, the argmax of ``soft`` (with ``readout='merge'`` and no smoothing, the
            merged clusters): categories ``'0'..'K-1'`` by size.

        Raises
        ------
        ScdefrError
            The model is not fitted yet.
        """
        if not self.is_fitted:
            raise ScdefrError("the model is not fitted yet: call fit() first")
        self.module.to(self.device)
        batch = make_batch(self.graph, None, self.device, counts=False)
        out = self.module.infer(batch, self.runtime.amp, refresh=self.training.batchnorm_stats == "refreshed")
        z, q = out.z.float(), out.q.float()
        self.merge_choice = {}
        n_clusters = self.module.cluster_centres.shape[0]
        if self.clusters.readout == "kmeans":
            centres, _ = kmeans_centres(z.cpu().numpy(), n_clusters, n_init=self.clusters.kmeans_n_init, seed=self.seed)
            q = soft_assignment(z, torch.as_tensor(centres, device=z.device))
        elif self.clusters.readout == "merge":
            embeddings = {"final": z.cpu().numpy()}
            if self.clusters.merge_embeddings == "both":
                embeddings["pre-trained"] = self.state.pretrained_embedding
            labels, self.merge_choice = most_modular_split_and_merge(
                embeddings,
                self.graph.adjacency,
                n_clusters,
                factor=self.clusters.merge_factor,
                seed=self.seed,
                restarts=self.clusters.merge_restarts,
            )
            q = torch.nn.functional.one_hot(torch.as_tensor(labels), n_clusters).float()
        if self.clusters.readout == "merge" and self.clusters.smoothing_steps == 0:
            # the clusters as merged; soft: the share of each cell's graph neighbours in each cluster
            soft, clusters = hard_clusters(smooth_assignments(q.numpy(), self.graph.adjacency, 1), labels)
        else:
            soft, clusters = hard_clusters(
                smooth_assignments(q.cpu().numpy(), self.graph.adjacency, self.clusters.smoothing_steps)
            )
        self.small_clusters_note = small_clusters_note(clusters)
        if self.small_clusters_note:
            logger.warning(self.small_clusters_note)
        return z.cpu().numpy(), soft, clusters

    def options(self) -> dict:
        """List every option of the model, by group.

        Returns
        -------
        dict
            ``seed``, the ``preset`` the options were resolved from, and one dict per option group
            (``clusters``, ``network``, ``training``, ``runtime``), as checkpoints store them.
        """
        groups = (self.clusters, self.network, self.training, self.runtime)
        return {
            "seed": self.seed,
            "preset": self.preset,
            **{key: group.to_dict() for key, group in zip(checkpoint.STORED_GROUPS, groups, strict=False)},
        }

    def summary(self) -> dict:
        """Describe the run for ``uns['scdefr']``: h5ad-writable.

        Returns
        -------
        dict
            ``params`` (the options and the schedule used), ``n_clusters`` and ``n_clusters_choice``
            (K and how it was chosen), ``cluster_assignment``, ``merge_choice`` (after :meth:`predict`
            with the merge read-out: the embedding whose clusters were kept, and each one's modularity;
            else empty), the loss ``history`` per phase,
            ``versions``, ``device``, ``seed`` and ``notes`` (what was done that the options did not
            ask for; after :meth:`predict`, its clusters of only a few cells).
        """
        from importlib.metadata import version

        from . import __version__

        n_cells = self.graph.n_cells
        history = {
            phase: {name: np.asarray(values, dtype=np.float64) for name, values in terms.items()}
            for phase, terms in self.state.history.items()
        }
        return {
            "params": {
                **_writable(self.options()),
                "batch_size_used": resolve_batch_size(self.training.batch_size, n_cells),
                "pretrain_epochs_used": resolve_epochs(self.training.pretrain_epochs, "pretrain", n_cells),
                "epochs_used": resolve_epochs(self.training.epochs, "joint", n_cells),
            },
            "n_clusters": int(self.module.config["n_clusters"]),
            "n_clusters_choice": _writable(self.state.n_clusters_info),
            "cluster_assignment": READOUTS[self.clusters.readout].format(
                factor=self.clusters.merge_factor,
                restarts=self.clusters.merge_restarts,
                embeddings=MERGED_EMBEDDINGS[self.clusters.merge_embeddings],
                steps=self.clusters.smoothing_steps,
            ),
            "merge_choice": _writable(self.merge_choice),
            "history": history,
            "versions": {
                "scdefr": __version__,
                **{name: version(name) for name in ("torch", "numpy", "scanpy", "anndata", "scikit-learn")},
                "python": platform.python_version(),
            },
            "device": str(self.device),
            "seed": self.seed,
            # what was done that the options did not ask for (e.g. K raised to 2 by auto), and clusters of a few cells
            "notes": [note for note in (self.state.n_clusters_info.get("note"), self.small_clusters_note) if note],
        }

    # --- files -----------------------------------------------------------------------------------
    def _payload(self) -> dict:
        return {"options": self.options(), "cells": checkpoint.fingerprint(self.adata)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the run (weights, options, phase, optimiser, history) atomically to a checkpoint.

        Parameters
        ----------
        path
            The checkpoint file; it loads with ``torch.load(weights_only=True)``.
        """
        checkpoint.save(path, checkpoint.build(self.module, self._optimizer_state or {}, self.state, self._payload()))

    @classmethod
    def load(cls, path: str | os.PathLike, adata, **runtime) -> SCDEFR:
        """Load a model (finished, or to be resumed with :meth:`fit`) from a checkpoint and its AnnData.

        Parameters
        ----------
        path
            A checkpoint written by :meth:`save` or :meth:`fit`.
        adata
            The graph AnnData the model was trained on (the same cells and genes, in order).
        **runtime
            Where and how the run goes on (the fields of :class:`~scdefr.options.RuntimeOptions`);
            every other option comes from the checkpoint.

        Returns
        -------
        SCDEFR
            The model, in the phase and epoch it was saved at.

        Raises
        ------
        TypeError
            ``runtime`` names an option that is not a runtime option.
        ScdefrError
            The checkpoint is unreadable, from another version, or for other cells or genes.
        """
        unknown = set(runtime) - set(RuntimeOptions.names())
        if unknown:
            raise TypeError(f"load() only takes {', '.join(RuntimeOptions.names())}, not {', '.join(sorted(unknown))}")
        saved = checkpoint.load(path)
        if saved["cells"] != checkpoint.fingerprint(adata):
            raise ScdefrError(
                f"checkpoint {path} was trained on other cells or genes than this input: "
                "give the input it was trained on, or train without --resume"
            )
        seed, stored = checkpoint.stored_options(saved, path)
        preset = saved["options"].get("preset", CommonOptions.preset)
        model = cls(adata, seed=seed, preset=preset, **{**stored, **runtime})
        module = saved["module"]
        if (module["n_genes"], module["n_cells"]) != (model.graph.n_genes, model.graph.n_cells):
            raise ScdefrError(f"checkpoint {path} describes a network of other size than this input")
        model.module = SCDEFRModule(
            model.graph.n_genes, model.graph.n_cells, model.network, n_clusters=module["n_clusters"]
        )
        checkpoint.load_module_state(model.module, saved, path)
        if saved["phase"] != "done":
            checkpoint.check_optimizer_state(saved["optimizer"], _optimised_parameters(model.module), path)
        model.state = TrainingState(
            phase=saved["phase"],
            epoch=saved["epoch"],
            history=saved["history"],
            n_clusters_info=saved["n_clusters_info"],
            cluster_frequencies=saved["cluster_frequencies"],
            pretrained_embedding=saved["pretrained_embedding"].numpy(),
        )
        model._optimizer_state = saved["optimizer"] or None
        logger.info("loaded %s: phase %s, epoch %d", path, model.state.phase, model.state.epoch)
        return model


def _optimised_parameters(module: SCDEFRModule) -> list:
    """The network's parameters in the order the training plan's optimiser holds them (the cluster
    centres, a group of their own, last)."""
    network = [p for name, p in module.named_parameters() if name != "cluster_centres"]
    return network + ([module.cluster_centres] if module.cluster_centres is not None else [])


def _warn_if_graph_differs(adata, preset: str) -> None:
    """A warning when the graph was built with other values of the preset's graph options (``scdefr
    graph`` without the preset): the model trains on it all the same."""
    built = adata.uns.get("scdefr_graph", {}).get("params", {})
    differing = [
        f"{name} {built[name]} (the preset: {value})"
        for name, value in preset_values(preset, GraphOptions.names()).items()
        if name in built and built[name] != value
    ]
    if differing:
        logger.warning(
            "preset %s, but the input graph was built with %s: build it with --preset %s for the preset's graph",
            preset,
            ", ".join(differing),
            preset,
        )


def _writable(value):
    """An h5ad-writable value: ``None`` becomes ``'none'``, tuples become lists."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return {str(k): _writable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_writable(v) for v in value]
    return value
