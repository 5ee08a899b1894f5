"""``scdefr train``: pre-train, initialise the clusters, train jointly; write embedding, clusters and model."""

from __future__ import annotations

import argparse
import logging

HELP = "train scDEFR on a 'scdefr graph' output: fused embedding, soft assignments and clusters (+ model .pt)"

from ..config import (
    DEFAULT_EPOCHS,
    DEFAULT_HIDDEN_DIMS,
    DEFAULT_INPUT_SCALING,
    DEFAULT_LEIDEN_RESOLUTION,
    DEFAULT_N_CLUSTERS_METHOD,
    DEFAULT_PRETRAIN_EPOCHS,
    DEFAULT_SMOOTHING_STEPS,
    GRAPH_LOSSES,
    INPUT_SCALINGS,
    JOINT_REFERENCE_CELLS,
    N_CLUSTERS_METHODS,
    PRETRAIN_REFERENCE_CELLS,
    SCALE_CLIP,
    ZINB_FORMS,
    TrainingConfig,
)

DEFAULTS = TrainingConfig()

logger = logging.getLogger(__name__)


def _keyword_or_int(keyword: str, keyword_value, minimum: int, expected: str):
    """argparse type: ``keyword`` (mapped to ``keyword_value``) or an integer >= ``minimum``."""

    def parse(value: str):
        if value == keyword:
            return keyword_value
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return number

    return parse


_n_clusters = _keyword_or_int("auto", "auto", 1, "'auto' or a positive integer")
_batch_size = _keyword_or_int("auto", -1, 0, "'auto', 0 (full batch) or a positive integer")
_epochs = _keyword_or_int("auto", -1, 0, "'auto' or an integer >= 0")


def _widths(value: str) -> list[int]:
    try:
        widths = [int(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1024,128,24, got {value!r}") from None
    if len(widths) < 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two positive widths like 1024,128,24, got {value!r}")
    return widths


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="output of 'scdefr graph' (S.graph.h5ad)")
    parser.add_argument("--output", required=True, help="h5ad to write (e.g. S.trained.h5ad)")


def add_options(parser: argparse.ArgumentParser) -> None:
    clusters = parser.add_argument_group("train: clusters")
    clusters.add_argument("--n-clusters", type=_n_clusters, default="auto",
                          help="number of clusters K, or 'auto': estimated from the pre-trained embedding "
                               "(never from labels); final clusters are the argmax of the soft assignment Q "
                               "averaged over --smoothing-steps steps of the cell graph")
    clusters.add_argument("--n-clusters-method", choices=N_CLUSTERS_METHODS, default=DEFAULT_N_CLUSTERS_METHOD,
                          help="how 'auto' picks K: the number of Leiden communities (>= 0.5%% of cells) at "
                               "--leiden-resolution, or the best silhouette of KMeans over k=2..--max-clusters; "
                               "above 100,000 cells, on a random sample of that many")
    clusters.add_argument("--leiden-resolution", type=float, default=DEFAULT_LEIDEN_RESOLUTION,
                          help="Leiden resolution for --n-clusters-method leiden (low: the pre-trained embedding "
                               "is finely structured)")
    clusters.add_argument("--max-clusters", type=int, default=30, help="largest K that 'auto' may choose")
    clusters.add_argument("--smoothing-steps", type=int, default=DEFAULT_SMOOTHING_STEPS,
                          help="average the soft assignments over each cell's graph neighbourhood this many times "
                               "before the argmax (random-walk steps); 0: argmax of Q itself, as the paper")
    clusters.add_argument("--kmeans-n-init", type=int, default=DEFAULTS.kmeans_n_init,
                          help="KMeans restarts for the cluster-centre initialisation (seeded by --seed)")

    network = parser.add_argument_group("train: network")
    network.add_argument("--hidden-dims", type=_widths, default=list(DEFAULT_HIDDEN_DIMS),
                         help="encoder widths, comma-separated; the last is the embedding size (decoder mirrors "
                              "them; the paper: 1024,128,24)")
    network.add_argument("--sigma", type=float, default=0.1,
                         help="layer-wise fusion: next input = (1 - sigma) * graph + sigma * autoencoder, in [0, 1]")
    network.add_argument("--dropout", type=float, default=0.01, help="dropout of every encoder/decoder layer (paper: 0.01)")
    network.add_argument("--tag-hops", type=int, default=3, help="TAGConv hops K (powers A^0..A^K of the adjacency)")
    network.add_argument("--zinb-form", choices=ZINB_FORMS, default="counts",
                         help="counts: ZINB of the raw counts, mean scaled by size factors, separate heads; "
                              "paper: ZINB of log-normalised X, no size factors, heads sharing one weight matrix")
    network.add_argument("--input-scaling", choices=INPUT_SCALINGS, default=DEFAULT_INPUT_SCALING,
                         help="what the encoders see of X: scale = each gene centred and scaled to unit variance, "
                              f"clipped at +-{SCALE_CLIP:g} (as sc.pp.scale); none = log-normalised X as it is "
                              "(the paper's code)")

    training = parser.add_argument_group("train: optimisation")
    training.add_argument("--pretrain-epochs", type=_epochs, default="auto", metavar="{auto,N}",
                          help=f"pre-training epochs; auto: {DEFAULT_PRETRAIN_EPOCHS} up to "
                               f"{PRETRAIN_REFERENCE_CELLS:,} cells, proportionally fewer above (paper: 250)")
    training.add_argument("--epochs", type=_epochs, default="auto", metavar="{auto,N}",
                          help=f"joint-training epochs; auto: {DEFAULT_EPOCHS} up to {JOINT_REFERENCE_CELLS:,} cells, "
                               "proportionally fewer above (paper: 250)")
    training.add_argument("--lr-pretrain", type=float, default=DEFAULTS.lr_pretrain,
                          help="Adam learning rate of pre-training (paper: 5e-5)")
    training.add_argument("--lr", type=float, default=DEFAULTS.lr,
                          help="Adam learning rate of joint training (paper: 1e-8, which barely moves the weights)")
    training.add_argument("--batch-size", type=_batch_size, default="auto", metavar="{auto,0,N}",
                          help="cells per mini-batch (Cluster-GCN parts of the graph); 0: full batch; "
                               "auto: full batch up to 5,000 cells, else 2,048")
    training.add_argument("--device", default=DEFAULTS.device, help="auto (CUDA when present), cpu, cuda or cuda:N")
    training.add_argument("--amp", action="store_true", help="bfloat16 mixed precision on CUDA (ignored on CPU)")
    training.add_argument("--log-every", type=int, default=DEFAULTS.log_every, help="log the loss terms every N epochs")

    training.add_argument("--graph-loss", choices=GRAPH_LOSSES, default=DEFAULTS.graph_loss,
                          help="graph reconstruction of z_graph: sampled = BCE on the kNN edges and as many random "
                               "cell pairs (graph-autoencoder loss); paper = squared error to the normalised "
                               "edge weights on the edges only")
    training.add_argument("--input-noise", type=float, default=DEFAULTS.input_noise,
                          help="sd of Gaussian noise added to the scaled input in pre-training (denoising); "
                               "0: none. 1 and 2.5 scored no better in BENCHMARKS.md round 9")

    training.add_argument("--cluster-balance", type=float, default=DEFAULTS.cluster_balance,
                          help="exponent b on the cluster sizes f in the DEC target p ~ q^2 / f^b: 1 is DEC; "
                               "larger moves cells at cluster borders to smaller clusters (BENCHMARKS.md round 15)")

    weights = parser.add_argument_group("train: loss weights (defaults as in the paper)")
    weights.add_argument("--weight-rec-pretrain", type=float, default=DEFAULTS.weight_rec_pretrain, help="graph reconstruction, pre-training")
    weights.add_argument("--weight-zinb-pretrain", type=float, default=DEFAULTS.weight_zinb_pretrain, help="ZINB, pre-training")
    weights.add_argument("--weight-rec", type=float, default=DEFAULTS.weight_rec, help="graph reconstruction, joint training")
    weights.add_argument("--weight-zinb", type=float, default=DEFAULTS.weight_zinb, help="ZINB, joint training")
    weights.add_argument("--weight-kl", type=float, default=DEFAULTS.weight_kl, help="KL(P || Q) of the fused embedding, joint training")
    weights.add_argument("--weight-bce-graph", type=float, default=DEFAULTS.weight_bce_graph, help="BCE(Q_graph, P_graph), joint training")
    weights.add_argument("--weight-bce-ae", type=float, default=DEFAULTS.weight_bce_ae, help="BCE(Q_ae, P_ae), joint training")

    files = parser.add_argument_group("train: model files")
    files.add_argument("--model-out", default=None,
                       help="model/checkpoint file (default: beside --output, S.model.pt for S.trained.h5ad); "
                            "load with torch.load(path, weights_only=True)")
    files.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every,
                       help="also save the run to --model-out every N epochs (0: only at the end of each phase)")
    files.add_argument("--resume", default=None,
                       help="continue the run saved in this checkpoint (its options apply, except "
                            "--device, --amp, --log-every, --checkpoint-every)")


def default_model_path(output: str) -> str:
    """``S.trained.h5ad`` -> ``S.model.pt``; any other ``X.h5ad`` -> ``X.model.pt``."""
    for suffix in (".trained.h5ad", ".h5ad"):
        if output.endswith(suffix):
            return output[: -len(suffix)] + ".model.pt"
    return output + ".model.pt"


def main(args: argparse.Namespace) -> None:
    from .. import io, tl
    from .._files import write_h5ad

    adata = io.read_step_h5ad(args.input)
    model_out = args.model_out or default_model_path(args.output)
    model = tl.scdefr(
        adata,
        args.n_clusters,
        checkpoint_path=model_out,
        resume=args.resume,
        n_clusters_method=args.n_clusters_method,
        resolution=args.leiden_resolution,
        max_clusters=args.max_clusters,
        smoothing_steps=args.smoothing_steps,
        hidden_dims=args.hidden_dims,
        sigma=args.sigma,
        dropout=args.dropout,
        hops=args.tag_hops,
        zinb_form=args.zinb_form,
        input_scaling=args.input_scaling,
        pretrain_epochs=args.pretrain_epochs,
        epochs=args.epochs,
        lr_pretrain=args.lr_pretrain,
        lr=args.lr,
        weight_rec_pretrain=args.weight_rec_pretrain,
        weight_zinb_pretrain=args.weight_zinb_pretrain,
        weight_rec=args.weight_rec,
        weight_zinb=args.weight_zinb,
        weight_kl=args.weight_kl,
        weight_bce_graph=args.weight_bce_graph,
        weight_bce_ae=args.weight_bce_ae,
        cluster_balance=args.cluster_balance,
        graph_loss=args.graph_loss,
        input_noise=args.input_noise,
        batch_size=args.batch_size,
        kmeans_n_init=args.kmeans_n_init,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
    )
    write_h5ad(adata, args.output, compression=args.compression)
    logger.info(
        "wrote %s and %s: %d cells in %d clusters (%s)",
        args.output, model_out, adata.n_obs, model.module.config["n_clusters"],
        adata.uns["scdefr"]["n_clusters_choice"]["method"],
    )
