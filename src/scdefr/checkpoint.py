"""Checkpoint files: a training run as plain tensors and primitives.

``torch.load(path, weights_only=True)`` reads them: the network's shape and weights, the optimiser's
state, the phase and epochs done, the loss history, how K was chosen, every model option and a
fingerprint of the cells and genes. :func:`load` refuses, in one line, anything that is not such a
file or that this version cannot continue (another format, missing or unknown entries, other shapes).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import ScdefrError

FORMAT = "scdefr-checkpoint/2"
# Every entry and its type; load() refuses a file that lacks one or has another type.
ENTRIES = {
    "format": str,
    "version": str,
    "module": dict,
    "state_dict": dict,
    "optimizer": dict,
    "phase": str,
    "epoch": int,
    "history": dict,
    "n_clusters_info": dict,
    "cluster_frequencies": dict,
    "options": dict,
    "cells": str,
}
PHASES = ("pretrain", "joint", "done")


def build(module, optimizer_state: dict, state, payload: dict) -> dict:
    """The checkpoint of ``module`` at ``state`` (a :class:`scdefr.plan.TrainingState`); ``payload``
    holds the model's ``options`` and ``cells`` fingerprint."""
    from . import __version__

    return {
        "format": FORMAT,
        "version": __version__,
        "module": dict(module.config),
        "state_dict": {key: value.detach().cpu() for key, value in module.state_dict().items()},
        "optimizer": _to_cpu(optimizer_state),
        "phase": state.phase,
        "epoch": int(state.epoch),
        "history": state.history,
        "n_clusters_info": state.n_clusters_info,
        "cluster_frequencies": state.cluster_frequencies,
        **payload,
    }


def save(path: str | os.PathLike, checkpoint: dict) -> None:
    """Write ``checkpoint`` atomically: the file appears under ``path`` only when complete."""
    from ._files import atomic_path

    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (``weights_only=True``) and check its entries, or explain in one line why not."""
    path = Path(path)
    if not path.is_file():
        raise ScdefrError(
            f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unpickling and zip error types
        raise ScdefrError(
            f"cannot read checkpoint {path} ({type(exc).__name__}): damaged, or not a checkpoint; "
            "delete it and train again"
        ) from None
    if not isinstance(checkpoint, dict) or not str(checkpoint.get("format", "")).startswith("scdefr-checkpoint/"):
        raise ScdefrError(f"{path} is not an scDEFR checkpoint")
    if checkpoint["format"] != FORMAT:
        raise ScdefrError(
            f"checkpoint {path} has format {checkpoint['format']!r}, this version reads {FORMAT!r}: "
            "train again with this version"
        )
    missing = [key for key in ENTRIES if key not in checkpoint]
    wrong = [key for key, kind in ENTRIES.items() if key in checkpoint and not isinstance(checkpoint[key], kind)]
    unknown = sorted(set(checkpoint) - set(ENTRIES))
    if missing or wrong or unknown or checkpoint["phase"] not in PHASES:
        problems = [
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected type of {', '.join(wrong)}" if wrong else "",
            f"unknown {', '.join(unknown)}" if unknown else "",
            f"unknown phase {checkpoint['phase']!r}" if checkpoint.get("phase") not in PHASES else "",
        ]
        raise ScdefrError(
            f"checkpoint {path} is damaged ({'; '.join(p for p in problems if p)}): delete it and train again"
        )
    return checkpoint


def load_module_state(module, checkpoint: dict, path: str | os.PathLike) -> None:
    """Load the checkpoint's weights into ``module``, refusing other names or shapes in one line."""
    expected = module.state_dict()
    saved = checkpoint["state_dict"]
    missing = sorted(set(expected) - set(saved))
    unknown = sorted(set(saved) - set(expected))
    reshaped = sorted(
        key for key in set(expected) & set(saved) if tuple(expected[key].shape) != tuple(saved[key].shape)
    )
    if missing or unknown or reshaped:
        detail = "; ".join(
            f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unknown", unknown), ("other shape of", reshaped))
            if keys
        )
        raise ScdefrError(
            f"checkpoint {path} does not fit the network it describes ({detail}): delete it and train again"
        )
    module.load_state_dict(saved)


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
