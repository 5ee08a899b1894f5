"""The scDEFR training plan: pre-training, cluster-centre initialisation, joint training.

Kept apart from the network (``scdefr.nn``) and from the user-facing model (``scdefr.model``):
this module turns a :class:`CellGraph` into batches, runs the two phases with their loss weights,
logs and records the loss terms per epoch, and writes / resumes checkpoints.

Checkpoints are plain dicts of tensors and primitives (``torch.load(path, weights_only=True)``
reads them): the module's constructor arguments and ``state_dict``, the training configuration,
the phase and number of completed epochs, the optimizer state, the loss history and how the
number of clusters was chosen. Every epoch re-seeds torch and numpy from ``(seed, phase, epoch)``,
so a resumed run continues exactly as the uninterrupted one would have.

Mini-batches (``batch_size > 0``) follow Cluster-GCN: the cells are partitioned once by KMeans on
their PCA coordinates into parts of about a quarter batch; each epoch the parts are shuffled and
grouped four at a time. A batch sees the subgraph induced by its cells, re-normalised
(``D^-1/2 (A_sub + I) D^-1/2`` over the kept edges), and the global self-correlation is computed
within the batch. The encoders' BatchNorm uses the batch's statistics in pre-training and, in the
joint phase, statistics of every cell refreshed each epoch (those inference uses; the centres are
fixed points in that space; the first epoch reuses the centres' pass). The DEC targets sharpen
the batch's soft assignments with the cluster sizes of all cells (from the previous epoch), as
the full-batch target would. Edges that cross batches are dropped for that step: that is the approximation, small
when parts follow the graph's communities.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from .config import (
    AUTO_BATCH_SIZE,
    AUTO_FULL_BATCH_MAX_CELLS,
    DEFAULT_INPUT_SCALING,
    SCALE_CLIP,
    TrainingConfig,
    resolve_epochs,
)
from .errors import ScdefrError
from .nn import ModuleOutput, SCDEFRModule, edge_reconstruction_loss, kl_clustering_loss, sampled_edge_loss, target_distribution
from .nn import zinb_negative_log_likelihood

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "scdefr-checkpoint/1"
PHASES = ("pretrain", "joint", "done")
PARTS_PER_BATCH = 4
FLAT_PARTITION_MAX_PARTS = 128  # up to 65,536 cells in batches of 2,048 (see partition_cells)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is the user's error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ScdefrError(f"device {name!r} requested but CUDA is not available (use --device cpu or auto)")
    return torch.device(name)


def resolve_batch_size(batch_size: int, n_cells: int) -> int:
    """0 means full batch; -1 (automatic) is full batch up to AUTO_FULL_BATCH_MAX_CELLS cells."""
    if batch_size == -1:
        batch_size = 0 if n_cells <= AUTO_FULL_BATCH_MAX_CELLS else AUTO_BATCH_SIZE
    return 0 if batch_size >= n_cells else batch_size


@dataclass
class CellGraph:
    """The arrays training reads from a graph h5ad (see docs/architecture.md), validated."""

    x: sp.csr_matrix | np.ndarray
    target: sp.csr_matrix | np.ndarray
    size_factors: np.ndarray
    adjacency: sp.csr_matrix
    pca: np.ndarray | None = None
    # Per-gene centre and scale of X for the encoders (``None``: X as it is); applied batch by batch
    # so a sparse X stays sparse in memory.
    x_centre: np.ndarray | None = None
    x_scale: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        return self.x.shape[0]

    @property
    def n_genes(self) -> int:
        return self.x.shape[1]

    @classmethod
    def from_anndata(cls, adata, zinb_form: str = "counts", input_scaling: str = DEFAULT_INPUT_SCALING) -> "CellGraph":
        """Take X, the ZINB target (``layers['counts']`` or X itself for the paper's form), size
        factors and ``obsp['scdefr_adjacency']``; refuse anything missing, non-finite or misshapen.

        ``input_scaling='scale'`` standardises each gene of X for the encoders: uncentred, the
        symmetric-normalised propagation of the graph encoder mostly carries each cell's degree
        times the mean profile, and training starts from an embedding without cell-type structure.
        """
        n_cells, n_genes = adata.shape
        if n_cells < 2 or n_genes < 1:
            raise ScdefrError(f"input has {n_cells} cells and {n_genes} genes: nothing to train on")
        if "scdefr_adjacency" not in adata.obsp:
            raise ScdefrError("input has no obsp['scdefr_adjacency']: run 'scdefr graph' on it first")
        x = _as_matrix(adata.X, "X")
        if zinb_form == "counts":
            if "counts" not in adata.layers:
                raise ScdefrError("input has no layers['counts'] (raw counts for the ZINB loss): run 'scdefr qc' first")
            if "size_factors" not in adata.obs:
                raise ScdefrError("input has no obs['size_factors']: run 'scdefr qc' first")
            target = _as_matrix(adata.layers["counts"], "layers['counts']")
            if _min_value(target) < 0:
                raise ScdefrError("layers['counts'] has negative values: it must hold raw counts")
            size_factors = np.asarray(adata.obs["size_factors"], dtype=np.float32)
            if not np.all(np.isfinite(size_factors)) or np.any(size_factors <= 0):
                raise ScdefrError("obs['size_factors'] must be finite and positive for every cell")
        else:
            target = x
            if _min_value(target) < 0:
                raise ScdefrError("X has negative values: the paper's ZINB form needs log-normalised, non-negative X")
            size_factors = np.ones(n_cells, dtype=np.float32)
        adjacency = adata.obsp["scdefr_adjacency"]
        adjacency = sp.csr_matrix(adjacency, dtype=np.float32)
        if adjacency.shape != (n_cells, n_cells):
            raise ScdefrError(f"obsp['scdefr_adjacency'] is {adjacency.shape}, expected ({n_cells}, {n_cells})")
        if not np.all(np.isfinite(adjacency.data)):
            raise ScdefrError("obsp['scdefr_adjacency'] has NaN or infinite values")
        adjacency.eliminate_zeros()
        pca = np.asarray(adata.obsm["X_pca"], dtype=np.float32) if "X_pca" in adata.obsm else None
        graph = cls(x=x, target=target, size_factors=size_factors, adjacency=adjacency, pca=pca)
        if input_scaling == "scale":
            graph.x_centre, graph.x_scale = gene_centre_and_scale(x)
        return graph

    def encoder_input(self, cells: np.ndarray | None) -> np.ndarray:
        """Dense X of ``cells`` (all when ``None``) as the encoders see it."""
        rows = _dense_rows(self.x, cells)
        if self.x_centre is None:
            return rows
        return np.clip((rows - self.x_centre) / self.x_scale, -SCALE_CLIP, SCALE_CLIP)


def gene_centre_and_scale(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each gene over cells (a constant gene gets scale 1, as in sc.pp.scale)."""
    n_cells = x.shape[0]
    mean = np.asarray(x.sum(axis=0, dtype=np.float64)).ravel() / n_cells
    if sp.issparse(x):
        squares = np.asarray(x.multiply(x).sum(axis=0, dtype=np.float64)).ravel()
    else:
        squares = np.einsum("ij,ij->j", x, x, dtype=np.float64)
    variance = (squares / n_cells - mean**2) * n_cells / (n_cells - 1)  # unbiased, as sc.pp.scale
    scale = np.sqrt(np.clip(variance, 0.0, None))
    scale[scale == 0] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def _as_matrix(matrix, name: str):
    matrix = sp.csr_matrix(matrix, dtype=np.float32) if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float32)
    values = matrix.data if sp.issparse(matrix) else matrix
    if not np.all(np.isfinite(values)):
        raise ScdefrError(f"{name} has NaN or infinite values")
    return matrix


def _min_value(matrix) -> float:
    values = matrix.data if sp.issparse(matrix) else matrix
    return float(values.min()) if values.size else 0.0


def _dense_rows(matrix, cells: np.ndarray | None) -> np.ndarray:
    rows = matrix if cells is None else matrix[cells]
    return rows.toarray() if sp.issparse(rows) else np.ascontiguousarray(rows)


@dataclass
class Batch:
    """One step's tensors: dense inputs of the batch's cells and their (sub)graph."""

    x: torch.Tensor
    target: torch.Tensor
    size_factors: torch.Tensor
    adjacency: torch.Tensor  # normalised, sparse COO
    cell_index: torch.Tensor
    edge_rows: torch.Tensor
    edge_cols: torch.Tensor
    edge_weights: torch.Tensor

    @property
    def n_cells(self) -> int:
        return self.x.shape[0]


def make_batch(graph: CellGraph, cells: np.ndarray | None, device: torch.device, counts: bool = True) -> Batch:
    """Tensors for ``cells`` (all cells when ``None``); ``counts=False`` leaves out the dense count
    targets (cells x genes), which inference does not need.

    A subset propagates over its induced subgraph, re-normalised from the kept edges' pattern; the
    reconstruction targets stay the full graph's values of those edges.
    """
    if cells is None:
        adjacency = graph.adjacency.tocoo()
        targets = adjacency
        cell_index = np.arange(graph.n_cells)
    else:
        targets = graph.adjacency[cells][:, cells].tocoo()
        pattern = (targets != 0).astype(np.float32)
        inv_sqrt_degree = 1.0 / np.sqrt(np.asarray(pattern.sum(axis=1)).ravel())
        adjacency = (sp.diags(inv_sqrt_degree) @ pattern @ sp.diags(inv_sqrt_degree)).tocoo()
        cell_index = cells
    n = adjacency.shape[0]
    sparse_adjacency = torch.sparse_coo_tensor(
        np.vstack([adjacency.row, adjacency.col]).astype(np.int64),
        adjacency.data.astype(np.float32),
        (n, n),
        check_invariants=False,  # built from a valid scipy matrix
    ).coalesce()

    def tensor(array, dtype=torch.float32):
        return torch.as_tensor(array, dtype=dtype).to(device)

    return Batch(
        x=tensor(graph.encoder_input(cells)),
        target=tensor(_dense_rows(graph.target, cells)) if counts else torch.empty(0, device=device),
        size_factors=tensor(graph.size_factors if cells is None else graph.size_factors[cells]),
        adjacency=sparse_adjacency.to(device),
        cell_index=tensor(cell_index, torch.long),
        edge_rows=tensor(targets.row, torch.long),
        edge_cols=tensor(targets.col, torch.long),
        edge_weights=tensor(targets.data),
    )


def partition_cells(
    graph: CellGraph, batch_size: int, seed: int, flat_max_parts: float = FLAT_PARTITION_MAX_PARTS
) -> list[np.ndarray]:
    """Cluster-GCN parts: KMeans on PCA coordinates (computed here when the input has none).

    A flat KMeans into P parts costs cells x P per iteration, and P grows with the cells: on one
    thread 100,000 cells took 10 s, 500,000 cells 355 s. Above ``flat_max_parts``
    parts it runs in two levels instead, about sqrt(P) groups, then each group into parts in
    proportion to its size (BENCHMARKS.md, round 9). Up to that size the parts are the flat ones.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD

    n_parts = max(1, math.ceil(graph.n_cells / batch_size) * PARTS_PER_BATCH)
    features = graph.pca
    if features is None:
        n_components = max(1, min(50, graph.n_genes - 1, graph.n_cells - 1))
        features = TruncatedSVD(n_components=n_components, random_state=seed).fit_transform(graph.x)
    groups = np.zeros(graph.n_cells, dtype=np.int64)
    if n_parts > flat_max_parts:
        n_groups = math.ceil(math.sqrt(n_parts))
        groups = KMeans(n_clusters=n_groups, n_init=1, random_state=seed).fit_predict(features)
    parts = []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        k = min(len(members), max(1, round(n_parts * len(members) / graph.n_cells)))
        labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(features[members])
        parts += [members[labels == part] for part in range(k) if np.any(labels == part)]
    return parts


def epoch_seed(seed: int, phase: str, epoch: int) -> int:
    """A seed per (run seed, phase, epoch): resumed runs draw the same dropout masks and batches."""
    return int(np.random.SeedSequence([seed, PHASES.index(phase), epoch]).generate_state(1)[0])


def loss_terms(
    out, batch: Batch, phase: str, graph_loss: str, frequencies: dict[str, torch.Tensor] | None, balance: float
) -> dict[str, torch.Tensor]:
    """Unweighted loss terms of one forward pass (float32, outside autocast). ``frequencies``: soft
    cluster sizes over all cells for ``q``, ``q_ae`` and ``q_graph`` (mini-batches; see
    :func:`scdefr.nn.target_distribution`); ``None``: each target uses the batch's own.
    ``balance``: the exponent on those sizes in every target (``TrainingConfig.cluster_balance``)."""
    if graph_loss == "sampled":
        reconstruction = sampled_edge_loss(out.z_graph, batch.edge_rows, batch.edge_cols, batch.n_cells)
    else:
        reconstruction = edge_reconstruction_loss(
            out.z_graph, batch.edge_rows, batch.edge_cols, batch.edge_weights, batch.n_cells
        )
    terms = {
        "reconstruction": reconstruction,
        "zinb": zinb_negative_log_likelihood(batch.target, out.mu, out.theta, out.pi),
    }
    if phase == "joint":
        f = frequencies or {}
        q, q_graph, q_ae = out.q.float(), out.q_graph.float(), out.q_ae.float()
        terms["kl"] = kl_clustering_loss(q, target_distribution(q, f.get("q"), balance))
        terms["bce_graph"] = F.binary_cross_entropy(q_graph, target_distribution(q_graph, f.get("q_graph"), balance))
        terms["bce_ae"] = F.binary_cross_entropy(q_ae, target_distribution(q_ae, f.get("q_ae"), balance))
    return terms


@dataclass
class TrainingState:
    """Where a run stands: the phase, epochs completed in it, the loss history, K and how it was chosen,
    and (mini-batch joint training) the soft cluster sizes over all cells that the next epoch's
    targets use."""

    phase: str = "pretrain"
    epoch: int = 0
    history: dict = field(default_factory=lambda: {"pretrain": {}, "joint": {}})
    n_clusters_info: dict = field(default_factory=dict)
    cluster_frequencies: dict = field(default_factory=dict)


class TrainingPlan:
    """Runs pre-training -> centre initialisation -> joint training on one :class:`CellGraph`.

    ``choose_n_clusters(embedding) -> (k, info)`` is called on the pre-trained embedding; it must not
    see labels (the plan never receives any). ``extra`` (primitives) is stored in every checkpoint.
    """

    def __init__(
        self,
        module: SCDEFRModule,
        graph: CellGraph,
        config: TrainingConfig,
        choose_n_clusters: Callable[[np.ndarray], tuple[int, dict]],
        state: TrainingState | None = None,
        optimizer_state: dict | None = None,
        extra: dict | None = None,
    ):
        config.validate()
        self.extra = extra or {}
        self.module = module
        self.graph = graph
        self.config = config
        self.choose_n_clusters = choose_n_clusters
        self.state = state or TrainingState()
        self.device = resolve_device(config.device)
        self.module.to(self.device)
        self.batch_size = resolve_batch_size(config.batch_size, graph.n_cells)
        self.parts = partition_cells(graph, self.batch_size, config.seed) if self.batch_size else None
        self.pretrain_epochs = resolve_epochs(config.pretrain_epochs, "pretrain", graph.n_cells)
        self.epochs = resolve_epochs(config.epochs, "joint", graph.n_cells)
        self._full_batch: Batch | None = None
        self._norms_match_weights = False  # encoders' BatchNorm holds every cell's statistics for the current weights
        self.checkpoint_path: str | os.PathLike | None = None
        self.optimizer = self._new_optimizer() if self.state.phase != "done" else None
        if optimizer_state and self.optimizer is not None:
            self.optimizer.load_state_dict(optimizer_state)

    # --- batches -------------------------------------------------------------------------------
    def _batch_stream(self, shuffle_seed: int | None):
        """The full batch (built once), or this epoch's Cluster-GCN batches (fixed order without a seed)."""
        if not self.batch_size:
            if self._full_batch is None:
                self._full_batch = make_batch(self.graph, None, self.device)
            yield self._full_batch
            return
        order = np.arange(len(self.parts))
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(len(self.parts))
        for i in range(0, len(order), PARTS_PER_BATCH):
            cells = np.sort(np.concatenate([self.parts[p] for p in order[i : i + PARTS_PER_BATCH]]))
            yield make_batch(self.graph, cells, self.device)

    def _autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the network (group 0) and, once they exist, the cluster centres (group 1)."""
        lr = self.config.lr_pretrain if self.state.phase == "pretrain" else self.config.lr
        network = [p for name, p in self.module.named_parameters() if name != "cluster_centres"]
        groups = [{"params": network}]
        if self.module.cluster_centres is not None:
            groups.append({"params": [self.module.cluster_centres]})
        return torch.optim.Adam(groups, lr=lr)

    def _start_joint_optimizer(self) -> None:
        """Keep the network's Adam moments from pre-training, add the centres, switch to the joint rate.

        A fresh Adam's first steps are sign steps of size lr on every weight; through wide layers
        that moves the embedding away from the centres just fitted by KMeans (on 300 cells, one
        such step sent every cell to one cluster). Continuing the moments avoids that jolt.
        """
        self.optimizer.add_param_group({"params": [self.module.cluster_centres]})
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr

    # --- phases --------------------------------------------------------------------------------
    def train(self, checkpoint_path: str | os.PathLike | None = None) -> TrainingState:
        """Run (or continue) both phases; checkpoints every ``checkpoint_every`` epochs and at phase ends."""
        self.checkpoint_path = checkpoint_path
        if self.state.phase == "pretrain":
            self._run_phase("pretrain", self.pretrain_epochs)
            self.initialise_centres()
        if self.state.phase == "joint":
            self._run_phase("joint", self.epochs)
            self.state.phase, self.state.epoch = "done", 0
            self.optimizer = None
        self.save_checkpoint(checkpoint_path)  # the fitted model, also when a finished run was loaded
        if self.device.type == "cuda":  # what a user sizes the GPU (and Nextflow's accelerator request) by
            logger.info("peak GPU memory: %.2f GB", torch.cuda.max_memory_allocated(self.device) / 1e9)
        return self.state

    def _run_phase(self, phase: str, n_epochs: int) -> None:
        weights = self.config.loss_weights(phase)
        history = self.state.history[phase]
        if self.state.epoch < n_epochs:
            logger.info("%s: epochs %d..%d of %d on %s", phase, self.state.epoch + 1, n_epochs, n_epochs, self.device)
        started = time.perf_counter()
        while self.state.epoch < n_epochs:
            epoch = self.state.epoch + 1
            seed = epoch_seed(self.config.seed, phase, epoch)
            torch.manual_seed(seed)
            self.module.train()
            if phase == "joint" and self.batch_size:
                self._whole_graph_normalisation()
            sums: dict[str, float] = {}
            n_batches = 0
            frequencies = self._global_frequencies(phase)
            next_frequencies: dict[str, torch.Tensor] = {}
            for batch in self._batch_stream(seed):
                x = batch.x
                if phase == "pretrain" and self.config.input_noise:
                    x = x + self.config.input_noise * torch.randn_like(x)
                with self._autocast():
                    out = self.module(x, batch.adjacency, batch.cell_index, batch.size_factors)
                terms = loss_terms(out, batch, phase, self.config.graph_loss, frequencies, self.config.cluster_balance)
                if frequencies is not None:
                    for name in frequencies:
                        size = getattr(out, name).detach().float().sum(dim=0)
                        next_frequencies[name] = next_frequencies.get(name, 0) + size
                loss = sum(weights[name] * value for name, value in terms.items())
                if not torch.isfinite(loss):
                    raise ScdefrError(
                        f"{phase} loss became {loss.item()} at epoch {epoch}: lower the learning rate (--lr-pretrain/--lr)"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self._norms_match_weights = False
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                n_batches += 1
            for name, total in sums.items():
                history.setdefault(name, []).append(total / n_batches)
            if next_frequencies:
                self.state.cluster_frequencies = {name: f.cpu().tolist() for name, f in next_frequencies.items()}
            self.state.epoch = epoch
            self._after_epoch(phase, epoch, n_epochs, started)

    def _global_frequencies(self, phase: str) -> dict[str, torch.Tensor] | None:
        """Soft cluster sizes over all cells for this epoch's targets: mini-batch joint training only.

        Every cell is in exactly one batch per epoch, so the sums of Q over the previous epoch's
        batches are sizes over all cells at no extra cost; the first epoch uses the KMeans sizes.
        """
        if phase != "joint" or not self.batch_size:
            return None
        return {name: torch.tensor(f, dtype=torch.float32, device=self.device)
                for name, f in self.state.cluster_frequencies.items()}

    def _after_epoch(self, phase: str, epoch: int, n_epochs: int, started: float) -> None:
        history = self.state.history[phase]
        if epoch % self.config.log_every == 0 or epoch == n_epochs:
            terms = ", ".join(f"{name} {values[-1]:.4g}" for name, values in history.items() if name != "loss")
            logger.info(
                "%s epoch %d/%d: loss %.4g (%s) [%.1fs]",
                phase, epoch, n_epochs, history["loss"][-1], terms, time.perf_counter() - started,
            )
        every = self.config.checkpoint_every
        if self.checkpoint_path and (epoch == n_epochs or (every and epoch % every == 0)):
            self.save_checkpoint(self.checkpoint_path)

    def initialise_centres(self) -> None:
        """Choose K on the pre-trained embedding, then KMeans (n_init, fixed seed) gives the centres."""
        from sklearn.cluster import KMeans

        embedding, _ = self.embed()
        n_clusters, info = self.choose_n_clusters(embedding)
        if not 1 <= n_clusters <= self.graph.n_cells:
            raise ScdefrError(f"number of clusters {n_clusters} is impossible for {self.graph.n_cells} cells")
        kmeans = KMeans(n_clusters=n_clusters, n_init=self.config.kmeans_n_init, random_state=self.config.seed)
        kmeans.fit(embedding)
        self.module.set_cluster_centres(torch.as_tensor(kmeans.cluster_centers_, dtype=torch.float32))
        self.state.n_clusters_info = {"n_clusters": int(n_clusters), **info}
        sizes = np.bincount(kmeans.labels_, minlength=n_clusters).astype(float).tolist()
        self.state.cluster_frequencies = {name: sizes for name in ("q", "q_ae", "q_graph")}
        logger.info("cluster centres initialised: K=%d (%s)", n_clusters, info.get("method", "given"))
        self.state.phase, self.state.epoch = "joint", 0
        self._start_joint_optimizer()
        self.save_checkpoint(self.checkpoint_path)

    # --- inference -----------------------------------------------------------------------------
    def whole_graph(self) -> Batch:
        """All cells in one batch, for inference: the encoders then propagate over the whole graph.

        Embedding Cluster-GCN batches one by one cuts every edge between batches: on 5,000
        simulated cells that took KMeans on z from ARI 0.90 to 0.57 for the same weights
        (BENCHMARKS.md, round 4). Without the decoder and the count targets, one pass costs
        memory linear in cells x genes, like a training batch of that size.
        """
        if not self.batch_size:
            return next(self._batch_stream(None))
        return make_batch(self.graph, None, self.device, counts=False)

    def _encoder_norms(self) -> list[torch.nn.BatchNorm1d]:
        encoders = (self.module.autoencoder, self.module.graph_encoder)
        return [m for part in encoders for m in part.modules() if isinstance(m, torch.nn.BatchNorm1d)]

    def _whole_graph_normalisation(self) -> None:
        """For this epoch's mini-batches, normalise the encoders with statistics of every cell.

        A Cluster-GCN batch holds a few graph communities; normalised by its own statistics, its
        cells land wherever its mean is mapped, not where inference puts them. The joint phase
        scores them against fixed centres: on 100,000 simulated cells it merged types and emptied
        clusters (BENCHMARKS.md, round 17). Statistics over the whole graph, refreshed once per
        epoch, are the ones inference uses. Costs one encoder pass over the whole graph per epoch,
        except the first: the pass that placed the centres left them for the same weights.
        """
        if not self._norms_match_weights:
            self.refresh_batchnorm(self.whole_graph())
        self.module.train()
        for norm in self._encoder_norms():
            norm.eval()

    @torch.no_grad()
    def refresh_batchnorm(self, batch: Batch) -> None:
        """Re-estimate the encoders' BatchNorm statistics on ``batch`` (all cells, dropout off).

        With momentum 0.01 the running statistics lag far behind short runs; evaluation-mode outputs
        then differ from what training saw. The decoder's are left alone: inference does not decode.
        Only the encoders run: the global self-correlation after them holds no BatchNorm.
        """
        norms = self._encoder_norms()
        momenta = [m.momentum for m in norms]
        self.module.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        with self._autocast():
            self.module.encode(batch.x, batch.adjacency)
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        self.module.eval()
        self._norms_match_weights = batch.n_cells == self.graph.n_cells

    @torch.no_grad()
    def infer(self) -> ModuleOutput:
        """Evaluation-mode outputs (z, z_ae, z_graph and, once the centres exist, the assignments) of
        every cell, from one pass over the whole graph; no ZINB parameters."""
        batch = self.whole_graph()
        self.refresh_batchnorm(batch)
        with self._autocast():
            return self.module(batch.x, batch.adjacency, batch.cell_index, None, decode=False)

    def embed(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Evaluation-mode embedding z and soft assignments Q (``None`` before the centres exist)."""
        out = self.infer()
        q = None if out.q is None else out.q.float().cpu().numpy()
        return out.z.float().cpu().numpy(), q

    # --- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """The run as a dict of tensors and primitives (loadable with ``weights_only=True``)."""
        config = dataclasses.asdict(self.config)
        return {
            "format": CHECKPOINT_FORMAT,
            "module_config": dict(self.module.config),
            "training_config": config,
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()) if self.optimizer is not None else {},
            "phase": self.state.phase,
            "epoch": self.state.epoch,
            "history": self.state.history,
            "n_clusters_info": self.state.n_clusters_info,
            "cluster_frequencies": self.state.cluster_frequencies,
            "extra": self.extra,
        }

    def save_checkpoint(self, path: str | os.PathLike | None) -> None:
        if not path:
            return
        from ._files import atomic_path

        with atomic_path(path) as tmp:
            torch.save(self.checkpoint(), tmp)
        logger.debug("checkpoint written: %s (%s, epoch %d)", path, self.state.phase, self.state.epoch)


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (``weights_only=True``) or explain in one line why not."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ScdefrError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torch raises several unpickling error types
        raise ScdefrError(f"cannot read checkpoint {path}: {type(exc).__name__}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ScdefrError(f"{path} is not an scDEFR checkpoint ({CHECKPOINT_FORMAT})")
    return checkpoint


def module_from_checkpoint(checkpoint: dict) -> SCDEFRModule:
    module = SCDEFRModule(**checkpoint["module_config"])
    module.load_state_dict(checkpoint["state_dict"])
    return module
