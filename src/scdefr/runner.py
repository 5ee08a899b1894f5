"""The single-machine runner: qc -> graph -> train -> export in one process.

Each step runs through its own command-line module's ``main(args)`` with the paths of the output
layout, exactly as the Nextflow modules call it, so ``scdefr run`` and the pipeline give the same files:

    <outdir>/<sample>/qc/<sample>.qc.h5ad, .qc_summary.json, .qc.png
    <outdir>/<sample>/graph/<sample>.graph.h5ad
    <outdir>/<sample>/train/<sample>.trained.h5ad, .model.pt
    <outdir>/<sample>/export/<sample>.h5ad, .clusters.csv, .embedding.csv, .metrics.json, *.png, *_mqc.*
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import time
from pathlib import Path

from .errors import ScdefrError

logger = logging.getLogger(__name__)

STEPS = ("qc", "graph", "train", "export")
SAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
INPUT_SUFFIXES = (".gz", ".h5ad", ".h5", ".hdf5", ".csv", ".tsv", ".txt", ".mtx")


def step_module(step: str):
    """The command-line module of a step (``scdefr.cli.<step>``): HELP, add_io_arguments, main."""
    return importlib.import_module(f"scdefr.cli.{step}")


def default_sample_name(path: str | Path) -> str:
    """The input's name without its data suffixes: ``pbmc.h5ad`` -> ``pbmc``, ``counts.csv.gz`` -> ``counts``."""
    name = Path(path).name
    while True:
        stripped = next(
            (name[: -len(s)] for s in INPUT_SUFFIXES if name.lower().endswith(s) and len(name) > len(s)), name
        )
        if stripped == name:
            return name
        name = stripped


def layout(outdir: str | Path, sample: str) -> dict[str, Path]:
    """The folder of each step's outputs for one sample."""
    root = Path(outdir) / sample
    return {step: root / step for step in STEPS}


def step_io(step: str, input_path: str | Path, folders: dict[str, Path], sample: str) -> list[str]:
    """The step's own input/output arguments, pointing into the layout."""
    if step == "qc":
        return ["--input", str(input_path), "--output", str(folders["qc"] / f"{sample}.qc.h5ad")]
    if step == "graph":
        return [
            "--input",
            str(folders["qc"] / f"{sample}.qc.h5ad"),
            "--output",
            str(folders["graph"] / f"{sample}.graph.h5ad"),
        ]
    if step == "train":  # the model goes beside the output (S.model.pt) unless --model-out says otherwise
        return [
            "--input",
            str(folders["graph"] / f"{sample}.graph.h5ad"),
            "--output",
            str(folders["train"] / f"{sample}.trained.h5ad"),
        ]
    if step == "export":
        return [
            "--input",
            str(folders["train"] / f"{sample}.trained.h5ad"),
            "--outdir",
            str(folders["export"]),
            "--prefix",
            sample,
        ]
    raise ValueError(step)


def step_namespace(step: str, io_argv: list[str], options: argparse.Namespace) -> argparse.Namespace:
    """The Namespace the step's ``main`` would get from its own command line: the runner's options
    (every step's, plus the common ones) overlaid with the step's parsed input/output arguments."""
    parser = argparse.ArgumentParser(prog=f"scdefr {step}")
    step_module(step).add_io_arguments(parser)
    io_args = parser.parse_args(io_argv)
    return argparse.Namespace(**{**vars(options), **vars(io_args)})


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Run every step for ``args.input`` into ``args.outdir``/``args.sample``; returns the step folders."""
    from ._files import ensure_writable_dir

    input_path = Path(args.input)
    if not input_path.exists():
        raise ScdefrError(f"input not found: {input_path}")
    sample = args.sample or default_sample_name(input_path)
    if not SAMPLE_NAME.match(sample):
        raise ScdefrError(
            f"sample name {sample!r} must start with a letter or digit and use only letters, digits, '.', '_', '-'"
        )
    folders = layout(args.outdir, sample)
    ensure_writable_dir(Path(args.outdir) / sample)

    timings = {}
    started = time.perf_counter()
    for number, step in enumerate(STEPS, start=1):
        logger.info("[%s] step %d/%d: %s", sample, number, len(STEPS), step)
        step_started = time.perf_counter()
        namespace = step_namespace(step, step_io(step, input_path, folders, sample), args)
        step_module(step).main(namespace)
        timings[step] = time.perf_counter() - step_started
        logger.info("[%s] %s done in %.1f s", sample, step, timings[step])
        if step == "qc":
            _check_label_column(folders["qc"] / f"{sample}.qc.h5ad", getattr(args, "label_key", None))
    logger.info(
        "[%s] finished in %.1f s (%s); results in %s",
        sample,
        time.perf_counter() - started,
        ", ".join(f"{s} {t:.1f} s" for s, t in timings.items()),
        folders["export"],
    )
    return folders


def _check_label_column(qc_output: Path, label_key: str | None) -> None:
    """Fail before training, not after it, when the export step's label column is absent.

    Only the column names are read: the labels themselves stay unread until export.
    """
    if label_key is None:
        return
    import h5py

    with h5py.File(qc_output, "r") as handle:
        columns = set(handle["obs"].keys())
    if label_key not in columns:
        raise ScdefrError(
            f"label column {label_key!r} is not in the input's obs (columns: {', '.join(sorted(columns - {'_index'}))})"
        )
