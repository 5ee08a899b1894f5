"""The option groups: one frozen dataclass per step or concern, each field an option's only declaration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ._option import AUTO, Auto, Options, option

KnnMethod = Literal["auto", "exact", "approx"]
ZinbForm = Literal["counts", "paper"]
GraphLoss = Literal["sampled", "paper"]
InputScaling = Literal["scale", "none"]
NClustersMethod = Literal["leiden", "silhouette"]
Compression = Literal["gzip", "none"]
Preset = Literal["none", "paper"]
GraphNormalization = Literal["symmetric", "directed"]
DecoderLayers = Literal["mirror", "gene_wide"]
JointMode = Literal["train", "eval"]
JointOptimizer = Literal["continue", "fresh"]
TargetGradient = Literal["detached", "through"]
BatchnormStats = Literal["refreshed", "running"]
Readout = Literal["centres", "kmeans", "merge"]
MergeEmbeddings = Literal["final", "both"]

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class CommonOptions(Options):
    """Options of every command."""

    seed: int = option(0, "random seed (PCA, kNN search, initialisation, training, UMAP)", low=0)
    threads: int = option(
        0,
        "CPU threads for numerical libraries (Nextflow passes task.cpus)",
        low=0,
        zero="all available",
        pipeline=False,
    )
    quiet: bool = option(False, "only warnings and errors: no progress bars, no progress log", pipeline=False)
    compression: Compression = option(
        "gzip",
        "compression of the h5ad files written: gzip (level 1) or none "
        "(about ten times faster to write, three times larger)",
    )
    preset: Preset = option(
        "none",
        "a named set of option values for the steps it concerns (paper: the paper's code, with a "
        "label-free read-out); options given explicitly still win",
    )


@dataclass(frozen=True)
class QCOptions(Options):
    """Cell and gene filters, normalisation and highly variable genes (``scdefr qc``, ``pp.qc``)."""

    transpose: bool = option(False, "the csv/tsv table is genes x cells")
    min_genes: int = option(20, "drop cells with fewer genes detected", low=0)
    min_counts: int = option(1, "drop cells with fewer counts", low=0)
    max_counts: int | None = option(None, "drop cells with more counts (doublets); none: no limit", low=1)
    max_pct_mito: float = option(20.0, "drop cells with a higher percentage of mitochondrial counts", low=0, high=100)
    mito_prefixes: tuple[str, ...] = option(("MT-", "mt-"), "gene-symbol prefixes of mitochondrial genes")
    min_cells: int = option(3, "drop genes detected in fewer cells", low=0)
    n_top_genes: int = option(2000, "highly variable genes to keep (all genes if there are fewer)", low=1)

    def check(self) -> None:
        """Refuse ``max_counts`` below ``min_counts`` and an empty mitochondrial prefix.

        Raises
        ------
        ScdefrError
            Naming ``max_counts`` or ``mito_prefixes``.
        """
        if self.max_counts is not None and self.max_counts < self.min_counts:
            self.fail("max_counts", f"({self.max_counts}) is below min_counts ({self.min_counts})")
        if not self.mito_prefixes or not all(self.mito_prefixes):
            self.fail("mito_prefixes", "must be one or more non-empty prefixes")


@dataclass(frozen=True)
class GraphOptions(Options):
    """PCA and the kNN cell graph (``scdefr graph``, ``pp.build_graph``)."""

    n_pcs: int = option(50, "principal components (capped for tiny inputs)", low=1)
    n_neighbors: int = option(10, "neighbours per cell in the kNN graph, the cell itself included", low=2)
    knn_method: KnnMethod = option(
        "auto", "kNN search: exact, approx (pynndescent) or auto (exact up to 100,000 cells)"
    )
    graph_normalization: GraphNormalization = option(
        "symmetric",
        "symmetric: D^-1/2 (A+I) D^-1/2 of the symmetrised kNN graph; directed: the paper's kNN graph as "
        "searched, D^-1/2 A D^-1/2 by out-degree (fusion, graph loss), by in-degree as PyG's gcn_norm (TAGConv)",
    )


@dataclass(frozen=True)
class NetworkOptions(Options):
    """The shape of the scDEFR network and what its encoders see."""

    hidden_dims: tuple[int, ...] = option(
        (256, 64, 16),
        "encoder widths, comma-separated; the last is the embedding size, the decoder mirrors them",
        low=1,
    )
    sigma: float = option(
        0.1, "layer-wise fusion: next input = (1 - sigma) * graph + sigma * autoencoder", low=0, high=1
    )
    dropout: float = option(0.01, "dropout of every encoder and decoder layer", low=0, high=1, high_open=True)
    tag_hops: int = option(3, "TAGConv hops: powers A^0..A^K of the adjacency", low=0)
    zinb_form: ZinbForm = option(
        "counts",
        "counts: ZINB of the raw counts scaled by size factors, separate "
        "heads; paper: ZINB of log-normalised X, one shared head",
    )
    input_scaling: InputScaling = option(
        "scale",
        "what the encoders see of X: scale = each gene to mean 0, "
        "variance 1, clipped at 10 (sc.pp.scale); none = X as it is",
    )
    decoder_layers: DecoderLayers = option(
        "mirror",
        "decoder hidden layers: mirror = the encoder widths reversed; gene_wide = those, then a "
        "Linear-BatchNorm-ReLU-dropout block of one unit per gene before the ZINB heads (the paper's)",
    )

    def check(self) -> None:
        """Refuse fewer than two encoder widths: one hidden layer and the embedding are the least.

        Raises
        ------
        ScdefrError
            Naming ``hidden_dims``.
        """
        if len(self.hidden_dims) < 2:
            self.fail("hidden_dims", f"must be at least two widths like 256,64,16, got {list(self.hidden_dims)}")


@dataclass(frozen=True)
class ClusterOptions(Options):
    """The number of clusters and how cells are assigned to them."""

    n_clusters: int | Auto = option(
        AUTO, "number of clusters K, or auto: estimated from the pre-trained embedding, never from labels", low=1
    )
    n_clusters_method: NClustersMethod = option(
        "leiden", "how auto picks K: Leiden communities (>= 0.5% of cells) or the best silhouette of KMeans"
    )
    leiden_resolution: float = option(0.5, "Leiden resolution of n_clusters_method leiden", low=0, low_open=True)
    max_clusters: int = option(30, "largest K that auto may choose", low=2)
    smoothing_steps: int = option(
        0,
        "random-walk steps of the cell graph the soft assignments are averaged over before the argmax",
        low=0,
        zero="no averaging (readout merge: the merged clusters, each cell's soft row the share of its graph "
        "neighbours per cluster)",
    )
    kmeans_n_init: int = option(
        20, "KMeans restarts of the cluster-centre initialisation (and of readout kmeans)", low=1
    )
    readout: Readout = option(
        "merge",
        "how cells get their cluster from the trained model: centres = soft assignments Q to the learned "
        "centres; kmeans = to the centres KMeans fits on the final embedding; merge = KMeans of the final "
        "embedding into merge_factor x K pieces merged over the cell graph down to K; each then averaged "
        "over smoothing_steps of the graph before the argmax",
    )
    merge_factor: int = option(8, "pieces per cluster that readout merge cuts the embedding into", low=1)
    merge_restarts: int = option(
        5,
        "readout merge runs from this many KMeans seeds; the partition of highest modularity on the cell graph is kept",
        low=1,
    )
    merge_embeddings: MergeEmbeddings = option(
        "both",
        "what readout merge runs on: final = the final embedding; both = the final and the pre-trained "
        "embedding, merge_restarts runs on each; the partition of highest modularity on the cell graph is kept",
    )


@dataclass(frozen=True)
class TrainingOptions(Options):
    """The training schedule, its learning rates and loss weights."""

    pretrain_epochs: int | Auto = option(AUTO, "pre-training epochs; auto: 60 up to 20,000 cells, fewer above", low=0)
    epochs: int | Auto = option(AUTO, "joint-training epochs; auto: 40 up to 5,000 cells, fewer above", low=0)
    lr_pretrain: float = option(1e-3, "Adam learning rate of pre-training", low=0, low_open=True)
    lr: float = option(3e-4, "Adam learning rate of joint training", low=0, low_open=True)
    batch_size: int | Auto = option(
        AUTO,
        "cells per mini-batch (Cluster-GCN parts of the graph); auto: full batch up to 5,000 cells, else 2,048",
        low=0,
        zero="full batch",
    )
    graph_loss: GraphLoss = option(
        "sampled",
        "graph reconstruction: sampled = BCE on the kNN edges and as many "
        "random pairs; paper = squared error to the normalised weights",
    )
    input_noise: float = option(
        0.0, "sd of Gaussian noise added to the encoders' input in pre-training", low=0, zero="none"
    )
    cluster_balance: float = option(
        1.0, "exponent b on the cluster sizes f in the DEC target q^2 / f^b (1: DEC's)", low=0
    )
    weight_rec_pretrain: float = option(1.0, "loss weight: graph reconstruction, pre-training", low=0)
    weight_zinb_pretrain: float = option(0.5, "loss weight: ZINB, pre-training", low=0)
    weight_rec: float = option(0.3, "loss weight: graph reconstruction, joint training", low=0)
    weight_zinb: float = option(0.1, "loss weight: ZINB, joint training", low=0)
    weight_kl: float = option(0.5, "loss weight: KL(P || Q) of the fused embedding, joint training", low=0)
    weight_bce_graph: float = option(0.1, "loss weight: BCE(Q_graph, P_graph), joint training", low=0)
    weight_bce_ae: float = option(0.1, "loss weight: BCE(Q_ae, P_ae), joint training", low=0)
    joint_mode: JointMode = option(
        "train",
        "network mode in joint training: train = dropout on, BatchNorm on batch statistics; "
        "eval = neither (the paper's code never leaves eval mode after pre-training)",
    )
    joint_optimizer: JointOptimizer = option(
        "continue",
        "Adam of joint training: continue = pre-training's moments, centres added; fresh = a new Adam (the paper's)",
    )
    target_gradient: TargetGradient = option(
        "detached",
        "DEC targets P of the joint losses: detached = held fixed within a step (DEC); "
        "through = gradients flow through P as well (the paper's)",
    )
    batchnorm_stats: BatchnormStats = option(
        "refreshed",
        "BatchNorm statistics of evaluation-mode passes: refreshed = re-estimated on all cells for the "
        "current weights; running = the running averages training left (the paper's)",
    )

    def loss_weights(self, phase: str) -> dict[str, float]:
        """Give the weight of each loss term in a training phase.

        Parameters
        ----------
        phase
            ``'pretrain'``, or any other phase for the joint phase's weights.

        Returns
        -------
        dict of str to float
            ``reconstruction`` and ``zinb`` in pre-training; those and ``kl``, ``bce_graph`` and ``bce_ae``
            in joint training.
        """
        if phase == "pretrain":
            return {"reconstruction": self.weight_rec_pretrain, "zinb": self.weight_zinb_pretrain}
        return {
            "reconstruction": self.weight_rec,
            "zinb": self.weight_zinb,
            "kl": self.weight_kl,
            "bce_graph": self.weight_bce_graph,
            "bce_ae": self.weight_bce_ae,
        }


@dataclass(frozen=True)
class RuntimeOptions(Options):
    """Where and how a training run goes on; a resumed run may change them."""

    device: str = option(AUTO, "auto (CUDA when present), cpu, cuda or cuda:N", pipeline=False)
    amp: bool = option(False, "bfloat16 mixed precision on CUDA (ignored on CPU)")
    log_every: int = option(10, "log the loss terms every N epochs", low=1, pipeline=False)
    checkpoint_every: int = option(0, "also save the run every N epochs", low=0, zero="only at the end of each phase")

    def check(self) -> None:
        """Refuse a device that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether it exists is checked later).

        Raises
        ------
        ScdefrError
            Naming ``device``.
        """
        if not _DEVICE.fullmatch(self.device):
            self.fail("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class ExportOptions(Options):
    """What the export step scores and draws (``scdefr export``)."""

    label_key: str | None = option(
        None,
        "obs column of known labels: scores the clusters (ARI, NMI, accuracy) "
        "and colours a second UMAP; read only at export, never by training",
        printable=True,
    )
    umap_max_cells: int = option(
        100_000,
        "fit the UMAP on a random subsample of this many cells and place the others among their nearest fitted cells",
        low=0,
        zero="fit every cell",
    )

    def check(self) -> None:
        """Refuse a UMAP limit of one cell and a blank label column.

        Raises
        ------
        ScdefrError
            Naming ``umap_max_cells`` or ``label_key``.
        """
        if self.umap_max_cells == 1:
            self.fail("umap_max_cells", "must be 0 (every cell) or at least 2")
        if self.label_key is not None and not self.label_key.strip():
            self.fail("label_key", "must name an obs column")


@dataclass(frozen=True)
class SimulateOptions(Options):
    """Simulated counts with planted cell types (``scdefr simulate``)."""

    n_cells: int = option(2000, "number of cells", low=1, pipeline=False)
    n_genes: int = option(2000, "number of genes (13 of them mitochondrial, MT-...)", low=1, pipeline=False)
    n_clusters: int = option(6, "number of planted cell types", low=1, pipeline=False)
    marker_lfc: float = option(
        0.8,
        "median natural-log fold change of marker genes (larger: easier to separate)",
        low=0,
        low_open=True,
        pipeline=False,
    )
    type_proportions: tuple[float, ...] | None = option(
        None,
        "each planted type's share of the cells, one per type (rescaled to sum to 1); none: random, "
        "moderately unequal shares",
        low=0,
        low_open=True,
        pipeline=False,
    )
    parts: int = option(
        1,
        "draw the counts in this many slices of cells, --threads processes at a time, each "
        "from its own random stream (the counts then depend on --parts)",
        low=1,
        pipeline=False,
    )

    def check(self) -> None:
        """Refuse more types or parts than cells, and type proportions that are not one per type.

        Raises
        ------
        ScdefrError
            Naming ``n_clusters``, ``parts`` or ``type_proportions``.
        """
        if self.n_clusters > self.n_cells:
            self.fail("n_clusters", f"({self.n_clusters}) exceeds n_cells ({self.n_cells})")
        if self.parts > self.n_cells:
            self.fail("parts", f"({self.parts}) exceeds n_cells ({self.n_cells})")
        if self.type_proportions is not None and len(self.type_proportions) != self.n_clusters:
            given = len(self.type_proportions)
            self.fail("type_proportions", f"must give one share per type ({self.n_clusters}), got {given}")


# The option groups of each step; ``scdefr run`` takes them all (their names are unique across steps).
STEP_OPTIONS: dict[str, tuple[type[Options], ...]] = {
    "qc": (QCOptions,),
    "graph": (GraphOptions,),
    "train": (ClusterOptions, NetworkOptions, TrainingOptions, RuntimeOptions),
    "export": (ExportOptions,),
}
MODEL_OPTIONS = STEP_OPTIONS["train"]
# Every command's groups besides CommonOptions.
COMMAND_OPTIONS: dict[str, tuple[type[Options], ...]] = {
    "simulate": (SimulateOptions,),
    **STEP_OPTIONS,
    "run": tuple(group for groups in STEP_OPTIONS.values() for group in groups),
}


def model_option_names() -> set[str]:
    """List the options of the model: the keywords :class:`scdefr.model.SCDEFR` and ``tl.scdefr`` take.

    Returns
    -------
    set of str
        The fields of the groups in :data:`MODEL_OPTIONS`; ``seed`` and ``preset`` are not among them.
    """
    return {name for group in MODEL_OPTIONS for name in group.names()}
