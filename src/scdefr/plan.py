"""The training plan: the optimiser, the two phases and their epoch loop.

Pre-training fits the encoders and the decoder on the ZINB and graph-reconstruction losses; then the
cluster centres are placed on the pre-trained embedding (by the caller's ``init_centres``); joint
training adds the DEC terms. Every epoch re-seeds torch from ``(seed, phase, epoch)``, so a run
resumed from a checkpoint continues exactly as the uninterrupted one would have. The network and its
losses live in :mod:`scdefr.nn`, the batches in :mod:`scdefr.data`, the user-facing model (options,
inference, files) in :mod:`scdefr.model`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import checkpoint
from ._device import autocast
from ._progress import progress
from .data import Batch, CellGraph, batches, make_batch, partition_cells, resolve_batch_size
from .errors import ScdefrError
from .nn import SCDEFRModule
from .options import RuntimeOptions, TrainingOptions

logger = logging.getLogger(__name__)

PHASES = ("pretrain", "joint", "done")
# Epochs of each phase up to its reference number of cells. Above it a mini-batched epoch takes
# proportionally more optimiser steps, so the automatic schedule shrinks the epochs in proportion
# (at least MIN_AUTO_EPOCHS): a run sees about as many cells per phase as a reference-size run. The
# joint phase's reference is the largest automatic full batch, where its epochs are single steps.
AUTO_EPOCHS = {"pretrain": (60, 20_000), "joint": (40, 5_000)}
MIN_AUTO_EPOCHS = 2


def resolve_epochs(epochs: int | str, phase: str, n_cells: int) -> int:
    """``'auto'``: the phase's epochs up to its reference number of cells, proportionally fewer above."""
    if epochs != "auto":
        return int(epochs)
    default, reference = AUTO_EPOCHS[phase]
    return max(MIN_AUTO_EPOCHS, round(default * min(1.0, reference / n_cells)))


def epoch_seed(seed: int, phase: str, epoch: int) -> int:
    """A seed per (run seed, phase, epoch): resumed runs draw the same dropout masks and batches."""
    return int(np.random.SeedSequence([seed, PHASES.index(phase), epoch]).generate_state(1)[0])


@dataclass
class TrainingState:
    """Where a run stands: the phase, epochs completed in it, the loss history, K and how it was chosen,
    (mini-batch joint training) the soft cluster sizes over all cells that the next epoch's targets
    use, and the pre-trained embedding the centres were placed on (empty before; the merge read-out
    also clusters it)."""

    phase: str = "pretrain"
    epoch: int = 0
    history: dict = field(default_factory=lambda: {"pretrain": {}, "joint": {}})
    n_clusters_info: dict = field(default_factory=dict)
    cluster_frequencies: dict = field(default_factory=dict)
    pretrained_embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


class TrainingPlan:
    """Runs pre-training -> centre initialisation -> joint training of ``module`` on ``graph``.

    ``init_centres(embedding) -> (centres, labels, info)`` places the centres on the pre-trained
    embedding; it must not see labels (the plan never receives any). ``payload()`` returns what the
    model stores in every checkpoint besides the plan's own state (options, input fingerprint).
    """

    def __init__(
        self,
        module: SCDEFRModule,
        graph: CellGraph,
        training: TrainingOptions,
        runtime: RuntimeOptions,
        seed: int,
        device: torch.device,
        init_centres: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, dict]],
        payload: Callable[[], dict],
        state: TrainingState,
        optimizer_state: dict | None = None,
    ):
        self.module, self.graph, self.training, self.runtime = module, graph, training, runtime
        self.seed, self.device, self.state = seed, device, state
        self.init_centres, self.payload = init_centres, payload
        self.batch_size = resolve_batch_size(training.batch_size, graph.n_cells)
        self.parts = partition_cells(graph, self.batch_size, seed) if self.batch_size else None
        self.epochs = {
            phase: resolve_epochs(getattr(training, name), phase, graph.n_cells)
            for phase, name in (("pretrain", "pretrain_epochs"), ("joint", "epochs"))
        }
        self._full_batch: Batch | None = None
        self._norms_match_weights = False  # the encoders' BatchNorm holds every cell's statistics for these weights
        self.checkpoint_path: str | os.PathLike | None = None
        self.optimizer = self._new_optimizer() if state.phase != "done" else None
        if optimizer_state and self.optimizer is not None:
            self.optimizer.load_state_dict(optimizer_state)

    # --- batches and optimiser -------------------------------------------------------------------
    def _epoch_batches(self, shuffle_seed: int | None):
        """The full batch (built once), or this epoch's Cluster-GCN batches."""
        if not self.batch_size:
            yield self.whole_graph()
            return
        yield from batches(self.graph, self.parts, self.device, shuffle_seed)

    def whole_graph(self) -> Batch:
        """All cells in one batch. Inference always propagates over the whole graph: embedding
        Cluster-GCN batches one by one would cut every edge between them. Without the count targets
        it costs memory linear in cells x genes, like a training batch of that size."""
        if self.batch_size:
            return make_batch(self.graph, None, self.device, counts=False)
        if self._full_batch is None:
            self._full_batch = make_batch(self.graph, None, self.device)
        return self._full_batch

    def _new_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the network (group 0) and, once they exist, the cluster centres (group 1)."""
        lr = self.training.lr_pretrain if self.state.phase == "pretrain" else self.training.lr
        network = [p for name, p in self.module.named_parameters() if name != "cluster_centres"]
        groups = [{"params": network}]
        if self.module.cluster_centres is not None:
            groups.append({"params": [self.module.cluster_centres]})
        return torch.optim.Adam(groups, lr=lr)

    def _start_joint_optimizer(self) -> None:
        """Keep the network's Adam moments from pre-training, add the centres, switch to the joint rate;
        or, with ``joint_optimizer='fresh'`` (the paper's), a new Adam over both.

        A fresh Adam's first steps are sign steps of size lr on every weight, which move the
        embedding away from the centres KMeans just placed; continuing the moments avoids that jolt.
        """
        if self.training.joint_optimizer == "fresh":
            self.optimizer = self._new_optimizer()
            return
        self.optimizer.add_param_group({"params": [self.module.cluster_centres]})
        for group in self.optimizer.param_groups:
            group["lr"] = self.training.lr

    # --- phases ----------------------------------------------------------------------------------
    def train(self, checkpoint_path: str | os.PathLike | None = None) -> TrainingState:
        """Run (or continue) both phases; checkpoints every ``checkpoint_every`` epochs and at phase ends."""
        self.module.to(self.device)
        self.checkpoint_path = checkpoint_path
        if self.state.phase == "pretrain":
            self._run_phase("pretrain")
            self._initialise_centres()
        if self.state.phase == "joint":
            self._run_phase("joint")
            self.state.phase, self.state.epoch = "done", 0
            self.optimizer = None
        self.save_checkpoint(checkpoint_path)  # the fitted model, also when a finished run was loaded
        if self.device.type == "cuda":  # what a user sizes the GPU (and Nextflow's accelerator request) by
            logger.info("peak GPU memory: %.2f GB", torch.cuda.max_memory_allocated(self.device) / 1e9)
        return self.state

    def _run_phase(self, phase: str) -> None:
        n_epochs = self.epochs[phase]
        weights = self.training.loss_weights(phase)
        history = self.state.history[phase]
        started = time.perf_counter()
        if self.state.epoch < n_epochs:
            logger.info("%s: epochs %d..%d of %d on %s", phase, self.state.epoch + 1, n_epochs, n_epochs, self.device)
        with progress(total=n_epochs, initial=self.state.epoch, desc=phase, unit="epoch") as bar:
            while self.state.epoch < n_epochs:
                epoch = self.state.epoch + 1
                sums = self._run_epoch(phase, epoch, weights)
                for name, total in sums.items():
                    history.setdefault(name, []).append(total)
                self.state.epoch = epoch
                bar.update(1)
                bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", refresh=False)
                self._after_epoch(phase, epoch, n_epochs, started)

    def _run_epoch(self, phase: str, epoch: int, weights: dict[str, float]) -> dict[str, float]:
        """One pass over the batches; returns the mean of each loss term over them."""
        seed = epoch_seed(self.seed, phase, epoch)
        torch.manual_seed(seed)
        self.module.train()
        if phase == "joint" and self.training.joint_mode == "eval":
            self._evaluation_mode()
        elif phase == "joint" and self.batch_size:
            self._whole_graph_normalisation()
        frequencies = self._global_frequencies(phase)
        next_frequencies: dict[str, torch.Tensor] = {}
        sums: dict[str, float] = {}
        n_batches = 0
        for batch in self._epoch_batches(seed):
            x = batch.x
            if phase == "pretrain" and self.training.input_noise:
                x = x + self.training.input_noise * torch.randn_like(x)
            with autocast(self.device, self.runtime.amp):
                out = self.module(
                    x, batch.adjacency, batch.cell_index, batch.size_factors, propagation=batch.propagation
                )
            terms = self.module.loss(
                out,
                batch,
                phase,
                self.training.graph_loss,
                frequencies,
                self.training.cluster_balance,
                self.training.target_gradient,
            )
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
        if next_frequencies:
            self.state.cluster_frequencies = {name: f.cpu().tolist() for name, f in next_frequencies.items()}
        return {name: total / n_batches for name, total in sums.items()}

    def _global_frequencies(self, phase: str) -> dict[str, torch.Tensor] | None:
        """Soft cluster sizes over all cells for this epoch's targets: mini-batch joint training only.

        Every cell is in exactly one batch per epoch, so the sums of Q over the previous epoch's
        batches are sizes over all cells at no extra cost; the first epoch uses the KMeans sizes.
        """
        if phase != "joint" or not self.batch_size:
            return None
        return {
            name: torch.tensor(f, dtype=torch.float32, device=self.device)
            for name, f in self.state.cluster_frequencies.items()
        }

    def _after_epoch(self, phase: str, epoch: int, n_epochs: int, started: float) -> None:
        history = self.state.history[phase]
        if epoch % self.runtime.log_every == 0 or epoch == n_epochs:
            terms = ", ".join(f"{name} {values[-1]:.4g}" for name, values in history.items() if name != "loss")
            logger.info(
                "%s epoch %d/%d: loss %.4g (%s) [%.1fs]",
                phase,
                epoch,
                n_epochs,
                history["loss"][-1],
                terms,
                time.perf_counter() - started,
            )
        every = self.runtime.checkpoint_every
        if self.checkpoint_path and (epoch == n_epochs or (every and epoch % every == 0)):
            self.save_checkpoint(self.checkpoint_path)

    def _initialise_centres(self) -> None:
        """Centres from the caller's ``init_centres`` on the pre-trained embedding; then the joint phase."""
        embedding = self.embed().z.float().cpu().numpy()
        centres, labels, info = self.init_centres(embedding)
        self.module.set_cluster_centres(torch.as_tensor(centres, dtype=torch.float32))
        self.state.n_clusters_info = info
        self.state.pretrained_embedding = embedding
        sizes = np.bincount(labels, minlength=len(centres)).astype(float).tolist()
        self.state.cluster_frequencies = {name: sizes for name in ("q", "q_ae", "q_graph")}
        self.state.phase, self.state.epoch = "joint", 0
        self._start_joint_optimizer()
        self.save_checkpoint(self.checkpoint_path)

    # --- inference during training ---------------------------------------------------------------
    def embed(self):
        """Evaluation-mode outputs of every cell from one pass over the whole graph."""
        out = self.module.infer(self.whole_graph(), self.runtime.amp, refresh=self.refreshes_batchnorm)
        self._norms_match_weights = True
        return out

    @property
    def refreshes_batchnorm(self) -> bool:
        """Whether evaluation-mode passes re-estimate BatchNorm statistics first (``batchnorm_stats``)."""
        return self.training.batchnorm_stats == "refreshed"

    def _evaluation_mode(self) -> None:
        """The whole network in evaluation mode for a joint epoch (``joint_mode='eval'``, the paper's):
        no dropout, BatchNorm on statistics of every cell for these weights, or on the running
        averages pre-training left (``batchnorm_stats='running'``, the paper's)."""
        self._refresh_norms()
        self.module.eval()

    def _whole_graph_normalisation(self) -> None:
        """For this epoch's mini-batches, normalise the encoders with statistics of every cell.

        A Cluster-GCN batch holds a few graph communities; normalised by its own statistics its cells
        land wherever its mean is mapped, not where inference puts them, and the joint phase scores
        them against fixed centres (at 100,000 cells this merged types). Statistics over the whole
        graph, refreshed once per epoch, are the ones inference uses; the pass that placed the centres
        left them for the first epoch.
        """
        self._refresh_norms()
        self.module.train()
        for norm in self.module.encoder_norms():
            norm.eval()

    def _refresh_norms(self) -> None:
        """Re-estimate the encoders' BatchNorm statistics on every cell if the weights moved since the
        last time, unless ``batchnorm_stats='running'`` keeps the running averages."""
        if self.refreshes_batchnorm and not self._norms_match_weights:
            batch = self.whole_graph()
            self.module.refresh_batchnorm(batch.x, batch.propagation, self.runtime.amp)
            self._norms_match_weights = True

    # --- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike | None) -> None:
        if not path:
            return
        optimizer = self.optimizer.state_dict() if self.optimizer is not None else {}
        checkpoint.save(path, checkpoint.build(self.module, optimizer, self.state, self.payload()))
        logger.debug("checkpoint written: %s (%s, epoch %d)", path, self.state.phase, self.state.epoch)
