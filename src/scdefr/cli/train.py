"""``scdefr train``: pre-train, initialise the clusters, train jointly; write embedding, clusters and model."""

from __future__ import annotations

import argparse
import logging

HELP = "train scDEFR on a 'scdefr graph' output: fused embedding, soft assignments and clusters (+ model .pt)"

logger = logging.getLogger(__name__)


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="output of 'scdefr graph' (S.graph.h5ad)")
    parser.add_argument("--output", required=True, help="h5ad to write (e.g. S.trained.h5ad)")
    parser.add_argument(
        "--model-out",
        default=None,
        help="model/checkpoint file (default: S.model.pt beside S.trained.h5ad); "
        "load with torch.load(path, weights_only=True)",
    )
    parser.add_argument(
        "--resume",
        default=None,
        help="continue the run saved in this checkpoint (its options apply, except the runtime "
        "ones: --device, --amp, --log-every, --checkpoint-every)",
    )


def default_model_path(output: str) -> str:
    """``S.trained.h5ad`` -> ``S.model.pt``; any other ``X.h5ad`` -> ``X.model.pt``."""
    for suffix in (".trained.h5ad", ".h5ad"):
        if output.endswith(suffix):
            return output[: -len(suffix)] + ".model.pt"
    return output + ".model.pt"


def main(args: argparse.Namespace) -> None:
    from .. import io, tl
    from .._device import resolve_device
    from .._files.h5ad import write_h5ad
    from .._files.paths import check_distinct
    from ..options import model_option_names

    model_out = args.model_out or default_model_path(args.output)
    # --model-out may be the --resume checkpoint: the run then goes on saving its progress there.
    check_distinct({"--input": args.input, "--resume": args.resume}, {"--output": args.output})
    check_distinct({"--input": args.input}, {"--output": args.output, "--model-out": model_out})
    resolve_device(args.device)  # before the input is read
    adata = io.read_step_h5ad(args.input)
    options = {name: getattr(args, name) for name in model_option_names()}
    tl.scdefr(adata, checkpoint_path=model_out, resume=args.resume, seed=args.seed, preset=args.preset, **options)
    write_h5ad(adata, args.output, compression=args.compression)
    summary = adata.uns["scdefr"]
    logger.info(
        "wrote %s and %s: %d cells in %d clusters (%s)",
        args.output,
        model_out,
        adata.n_obs,
        summary["n_clusters"],
        summary["n_clusters_choice"]["method"],
    )
