"""Defaults and validation of scDEFR's options, in one torch-free place.

The command line (which must start without torch in the qc/graph/export images), the network, the
training plan and the user-facing model all read their defaults from here. Where they differ from
the paper, BENCHMARKS.md says which measurement chose them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from .errors import ScdefrError

# Encoder widths (the paper: 1024, 128, 24); the last is the embedding size.
DEFAULT_HIDDEN_DIMS = (256, 64, 16)
# "counts": ZINB of the raw counts with size factors, separate heads; "paper": the paper's code's form.
ZINB_FORMS = ("counts", "paper")
# "sampled": GAE edges + sampled non-edges (default); "paper": masked squared error to the normalised weights.
GRAPH_LOSSES = ("sampled", "paper")
# What the encoders see of X: "scale" = each gene centred to mean 0, variance 1, clipped at
# +-SCALE_CLIP (sc.pp.scale's convention); "none" = log-normalised X as it is (the paper's code).
INPUT_SCALINGS = ("scale", "none")
DEFAULT_INPUT_SCALING = "scale"
SCALE_CLIP = 10.0
# How `--n-clusters auto` picks K on the pre-trained embedding. Leiden at a low resolution gave the
# most stable K across the six benchmark datasets; the silhouette maximum often chose 2-3 clusters.
N_CLUSTERS_METHODS = ("leiden", "silhouette")
DEFAULT_N_CLUSTERS_METHOD = "leiden"
DEFAULT_LEIDEN_RESOLUTION = 0.1
# Final clusters: the soft assignment Q averaged over this many steps of the cell graph's random
# walk, then argmax. Q is a per-cell kernel to the centres; averaging over neighbours settles cells
# at cluster borders (BENCHMARKS.md, round 13). 0: argmax of Q itself, as the paper.
DEFAULT_SMOOTHING_STEPS = 4
# Full-batch training up to this many cells; above it batches of AUTO_BATCH_SIZE cells. Memory is
# dominated by cells x genes activations (ZINB terms, about 1 GB per 4,000 cells at 2,000 genes).
AUTO_FULL_BATCH_MAX_CELLS = 5_000
AUTO_BATCH_SIZE = 2_048
# Epochs of each phase for up to its reference number of cells. Above it a mini-batched epoch takes
# proportionally more optimiser steps, so the automatic schedule (epochs = -1) shrinks the epochs in
# proportion: a run sees about as many cells per phase as a reference-size run, and at least
# MIN_AUTO_EPOCHS epochs. Pre-training: 60 epochs up to 20,000 cells (BENCHMARKS.md, rounds 4 and 6).
# Joint phase: 40 epochs (chosen on full-batch inputs, one optimiser step each) up to the largest
# automatic full batch; longer mini-batched joint phases drifted and merged types (round 19).
DEFAULT_PRETRAIN_EPOCHS = 60
DEFAULT_EPOCHS = 40
PRETRAIN_REFERENCE_CELLS = 20_000
JOINT_REFERENCE_CELLS = AUTO_FULL_BATCH_MAX_CELLS
MIN_AUTO_EPOCHS = 2
# The export's UMAP is fitted on at most this many cells (a random subsample); the others are placed
# among their nearest fitted cells. A seeded UMAP lays cells out on one thread (BENCHMARKS.md, round 10).
UMAP_MAX_CELLS = 100_000


def check_smoothing_steps(steps) -> int:
    """``steps`` as a plain int (checkpoints load weights-only), or a one-line error."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ScdefrError(f"smoothing steps must be an integer >= 0, got {steps!r}")
    return int(steps)


def resolve_epochs(epochs: int, phase: str, n_cells: int) -> int:
    """-1 (automatic) gives the phase's default epochs up to its reference number of cells,
    proportionally fewer above; a number given is kept."""
    if epochs != -1:
        return epochs
    default, reference = {
        "pretrain": (DEFAULT_PRETRAIN_EPOCHS, PRETRAIN_REFERENCE_CELLS),
        "joint": (DEFAULT_EPOCHS, JOINT_REFERENCE_CELLS),
    }[phase]
    return max(MIN_AUTO_EPOCHS, round(default * min(1.0, reference / n_cells)))


@dataclass
class TrainingConfig:
    """Everything the training plan needs besides the network's shape. Defaults come from the benchmark
    (BENCHMARKS.md); epochs and batch size -1 are automatic (sized by the number of cells); the paper's are ``lr_pretrain=5e-5``, ``lr=1e-8``, 250 + 250 epochs, ``graph_loss='paper'``."""

    pretrain_epochs: int = -1  # -1: automatic (see resolve_epochs)
    epochs: int = -1
    lr_pretrain: float = 1e-3
    # Joint rate: 1e-3 gained 0.013 on full-batch inputs but scored less on 50,000 cells in mini-batches
    # (ARI 0.72 against 0.88 over two seeds; BENCHMARKS.md, round 6).
    lr: float = 3e-4
    weight_rec_pretrain: float = 1.0
    weight_zinb_pretrain: float = 0.5
    weight_rec: float = 0.3
    weight_zinb: float = 0.1
    weight_kl: float = 0.5
    weight_bce_graph: float = 0.1
    weight_bce_ae: float = 0.1
    # Exponent on the soft cluster sizes in DEC's target (1: DEC). BENCHMARKS.md, round 15.
    cluster_balance: float = 1.0
    graph_loss: str = "sampled"
    # Standard deviation of Gaussian noise added to the encoders' (scaled) input in pre-training: a
    # denoising objective, as the ZINB autoencoders reporting 0.78 on pbmc_10x use. 0: none.
    input_noise: float = 0.0
    batch_size: int = -1  # -1: automatic, 0: full batch, N: about N cells per mini-batch
    kmeans_n_init: int = 20
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    log_every: int = 10
    checkpoint_every: int = 0

    def validate(self) -> None:
        for name in ("pretrain_epochs", "epochs"):
            if getattr(self, name) < -1:
                raise ScdefrError(f"{name.replace('_', ' ')} must be >= 0 or automatic, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            raise ScdefrError(f"checkpoint every must be >= 0, got {self.checkpoint_every}")
        for name in ("lr_pretrain", "lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ScdefrError(f"{name.replace('_', ' ')} must be a positive number, got {value}")
        for name in [f.name for f in dataclasses.fields(self) if f.name.startswith("weight_")]:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ScdefrError(f"loss {name.replace('_', ' ')} must be >= 0, got {value}")
        for name in ("cluster_balance", "input_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ScdefrError(f"{name.replace('_', ' ')} must be >= 0, got {value}")
        if self.graph_loss not in GRAPH_LOSSES:
            raise ScdefrError(f"graph loss must be one of {', '.join(GRAPH_LOSSES)}, got {self.graph_loss!r}")
        if self.batch_size < -1:
            raise ScdefrError(f"batch size must be 0 (full batch), a positive number or automatic, got {self.batch_size}")
        if self.kmeans_n_init < 1:
            raise ScdefrError(f"kmeans n_init must be >= 1, got {self.kmeans_n_init}")
        if self.log_every < 1:
            raise ScdefrError(f"log every must be >= 1, got {self.log_every}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ScdefrError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def loss_weights(self, phase: str) -> dict[str, float]:
        if phase == "pretrain":
            return {"reconstruction": self.weight_rec_pretrain, "zinb": self.weight_zinb_pretrain}
        return {
            "reconstruction": self.weight_rec,
            "zinb": self.weight_zinb,
            "kl": self.weight_kl,
            "bce_graph": self.weight_bce_graph,
            "bce_ae": self.weight_bce_ae,
        }
