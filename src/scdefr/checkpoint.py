"""Checkpoint files: a training run as plain tensors and primitives.

``torch.load(path, weights_only=True)`` reads them: the network's shape and weights, the optimiser's
state, the phase and epochs done, the loss history, how K was chosen, every model option and a
fingerprint of the cells and genes (:func:`fingerprint`). :func:`load` refuses, in one line, anything
that is not such a file or that this version cannot continue (another format, missing or unknown
entries, other shapes), and :func:`stored_options` any option this version does not have or would refuse.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
from pathlib import Path

import torch

from .errors import ScdefrError
from .options import ClusterOptions, CommonOptions, NetworkOptions, RuntimeOptions, TrainingOptions

FORMAT = "scdefr-checkpoint/3"
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
    "pretrained_embedding": torch.Tensor,
    "options": dict,
    "cells": str,
}
PHASES = ("pretrain", "joint", "done")

# The option groups a checkpoint stores, by the key they are stored under.
STORED_GROUPS = {
    "clusters": ClusterOptions,
    "network": NetworkOptions,
    "training": TrainingOptions,
    "runtime": RuntimeOptions,
}


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
        "pretrained_embedding": torch.as_tensor(state.pretrained_embedding),
        **payload,
    }


def save(path: str | os.PathLike, checkpoint: dict) -> None:
    """Write ``checkpoint`` atomically: the file appears under ``path`` only when complete.

    Written through a Python file: torch writing to a path reports a full disk as a RuntimeError
    without the reason.
    """
    from ._files.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(checkpoint, handle)


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (``weights_only=True``) and check its entries, or explain in one line why not."""
    path = Path(path)
    if not path.is_file():
        raise ScdefrError(
            f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file"
        )
    try:
        handle = open(path, "rb")
    except OSError as exc:  # the system refused the read (permission)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    with handle:
        try:
            checkpoint = torch.load(handle, map_location="cpu", weights_only=True)
        except MemoryError:
            raise
        except Exception as exc:  # torch raises several unpickling and zip error types (OSError for a cut file)
            if isinstance(exc, OSError) and exc.errno == errno.EIO:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
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
    problems = _entry_problems(checkpoint)
    if problems:
        raise ScdefrError(f"checkpoint {path} is damaged ({'; '.join(problems)}): delete it and train again")
    return checkpoint


def _entry_problems(checkpoint: dict) -> list[str]:
    """What is missing, unknown or malformed among the checkpoint's entries (its weights are checked
    against the network by :func:`load_module_state`)."""
    missing = [key for key in ENTRIES if key not in checkpoint]
    wrong = [key for key, kind in ENTRIES.items() if key in checkpoint and not isinstance(checkpoint[key], kind)]
    unknown = sorted(set(checkpoint) - set(ENTRIES))
    problems = [
        f"missing {', '.join(missing)}" if missing else "",
        f"unexpected type of {', '.join(wrong)}" if wrong else "",
        f"unknown {', '.join(unknown)}" if unknown else "",
    ]
    if missing or wrong:
        return [p for p in problems if p]
    if checkpoint["phase"] not in PHASES:
        problems.append(f"unknown phase {checkpoint['phase']!r}")
    if checkpoint["epoch"] < 0:
        problems.append(f"negative epoch {checkpoint['epoch']}")
    module = checkpoint["module"]
    sizes = {key: module.get(key) for key in ("n_genes", "n_cells", "n_clusters")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        problems.append(f"network sizes {sizes}")
    elif (sizes["n_clusters"] > 0) != (checkpoint["phase"] != "pretrain"):
        problems.append(f"{sizes['n_clusters']} cluster centres in phase {checkpoint['phase']}")
    tensors = checkpoint["state_dict"].values()
    if not all(isinstance(value, torch.Tensor) for value in tensors):
        problems.append("weights that are not tensors")
    elif not all(bool(torch.isfinite(value).all()) for value in tensors if value.is_floating_point()):
        problems.append("NaN or infinite weights")
    if not _is_history(checkpoint["history"]):
        problems.append("malformed loss history")
    if not _are_frequencies(checkpoint["cluster_frequencies"], sizes["n_clusters"], checkpoint["phase"]):
        problems.append("malformed cluster frequencies")
    embedding = checkpoint["pretrained_embedding"]
    placed = checkpoint["phase"] != "pretrain"  # the centres, and so this embedding, come after pre-training
    if (embedding.numel() > 0) != placed or (placed and not _is_embedding(embedding, sizes["n_cells"])):
        problems.append(f"pre-trained embedding of shape {tuple(embedding.shape)} in phase {checkpoint['phase']}")
    optimizer = checkpoint["optimizer"]
    if optimizer and not (isinstance(optimizer.get("state"), dict) and isinstance(optimizer.get("param_groups"), list)):
        problems.append("malformed optimiser state")
    return [p for p in problems if p]


def _is_embedding(embedding: torch.Tensor, n_cells: int) -> bool:
    return (
        embedding.dim() == 2
        and embedding.shape[0] == n_cells
        and embedding.is_floating_point()
        and bool(torch.isfinite(embedding).all())
    )


def _is_history(history: dict) -> bool:
    return set(history) == {"pretrain", "joint"} and all(
        isinstance(terms, dict)
        and all(isinstance(values, (list, tuple)) and all(_is_number(v) for v in values) for values in terms.values())
        for terms in history.values()
    )


def _are_frequencies(frequencies: dict, n_clusters, phase: str) -> bool:
    """The cluster sizes the joint phase starts from: one list of K sizes per assignment, from the joint phase on."""
    if phase == "pretrain" or not frequencies:
        return phase != "joint"
    return all(
        isinstance(sizes, (list, tuple)) and len(sizes) == n_clusters and all(_is_number(v) and v >= 0 for v in sizes)
        for sizes in frequencies.values()
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


def check_optimizer_state(optimizer: dict, parameters: list, path: str | os.PathLike) -> None:
    """Refuse in one line an optimiser state that does not fit ``parameters`` (the network's, in the
    order the optimiser holds them): torch would only fail at the first step of the resumed run."""
    if not optimizer:
        return
    ids = [index for group in optimizer["param_groups"] for index in _params_of(group)]
    fits = sorted(ids) == list(range(len(parameters))) and all(
        isinstance(state, dict)
        and index in range(len(parameters))
        and all(
            tuple(value.shape) == tuple(parameters[index].shape)
            for name, value in state.items()
            if isinstance(value, torch.Tensor) and name != "step"
        )
        for index, state in optimizer["state"].items()
    )
    if not fits:
        raise ScdefrError(
            f"checkpoint {path} holds an optimiser state that does not fit its network: delete it and train again"
        )


def fingerprint(adata) -> str:
    """Identifies the cells and genes a model belongs to (their names, in order)."""
    digest = hashlib.sha1()
    for names in (adata.obs_names, adata.var_names):
        digest.update("\x1f".join(map(str, names)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def stored_options(saved: dict, path) -> tuple[int, dict]:
    """The checkpoint's seed and options as keywords of :class:`scdefr.model.SCDEFR`, checked as the
    command line checks them; refused in one line unless they are exactly this version's options (none
    missing, none unknown), since a default standing in for a missing option would continue another run."""
    stored = saved["options"]
    unknown_groups = sorted(set(stored) - set(STORED_GROUPS) - {"seed", "preset"})
    missing_groups = sorted(set(STORED_GROUPS) - set(stored))
    if unknown_groups or missing_groups or not all(isinstance(stored[key], dict) for key in STORED_GROUPS):
        raise ScdefrError(
            f"checkpoint {path} stores options this version cannot use "
            f"({', '.join(missing_groups + unknown_groups) or 'malformed groups'}): train again with this version"
        )
    keywords = {}
    for key, group in STORED_GROUPS.items():
        values = {name: tuple(value) if isinstance(value, list) else value for name, value in stored[key].items()}
        unknown = sorted(set(values) - set(group.names()))
        missing = sorted(set(group.names()) - set(values))
        if unknown or missing:
            detail = "; ".join(
                f"{what}: {', '.join(names)}" for what, names in (("unknown", unknown), ("missing", missing)) if names
            )
            raise ScdefrError(
                f"checkpoint {path} does not store this version's options ({detail}); train again with this version"
            )
        try:
            group(**values)
        except (ScdefrError, TypeError) as exc:
            raise ScdefrError(f"checkpoint {path} stores an impossible option: {exc}; train again") from None
        keywords.update(values)
    try:
        seed = CommonOptions(seed=stored.get("seed")).seed
    except ScdefrError as exc:
        raise ScdefrError(f"checkpoint {path} stores no usable seed ({exc}); train again") from None
    return seed, keywords


def _params_of(group) -> list:
    return list(group.get("params", [])) if isinstance(group, dict) else [None]


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
