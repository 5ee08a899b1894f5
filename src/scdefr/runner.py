"""The single-machine runner: qc -> graph -> train -> export in one process.

Each step runs through its own command-line module's ``main(args)`` with the paths of the output
layout, exactly as the Nextflow modules call it, so ``scdefr run`` and the pipeline give the same files:

    <outdir>/<sample>/qc/<sample>.qc.h5ad, .qc_summary.json, .qc.png
    <outdir>/<sample>/graph/<sample>.graph.h5ad
    <outdir>/<sample>/train/<sample>.trained.h5ad, .model.pt
    <outdir>/<sample>/export/<sample>.h5ad, .clusters.csv, .embedding.csv, .metrics.json, *.png, *_mqc.*

A run is all or nothing per sample. Every option and the paths are checked before the first step;
the steps write into ``<outdir>/<sample>/.staging-<host>-<pid>/``, and only when all four succeeded
are the sample's step folders replaced by the staged ones (:func:`replace_results`), so a run that
fails leaves the previous results as they were, and never new files beside old ones. A lock file
(``.scdefr-run.lock``, removed at the end) keeps two runs from writing one sample at once; the
next run removes the staging folder of a killed run, and completes a replacement it was killed in.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import ScdefrError

logger = logging.getLogger(__name__)

STEPS = ("qc", "graph", "train", "export")
STAGING, SWAP, PREVIOUS = ".staging-", ".swap-", ".previous-"
LOCK_NAME = ".scdefr-run.lock"
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
    return step_folders(Path(outdir) / sample)


def step_folders(root: Path) -> dict[str, Path]:
    """``root/<step>`` for each step."""
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
    from ._files.atomic import owner_tag
    from ._files.paths import created_folders, ensure_writable_dir, remove_if_empty

    input_path, sample = check_run(args)
    sample_dir = Path(args.outdir) / sample
    made = created_folders(sample_dir)
    started = time.perf_counter()
    try:
        ensure_writable_dir(sample_dir)
        with sample_lock(sample_dir):
            remove_stale_runs(sample_dir)
            staging = sample_dir / f"{STAGING}{owner_tag()}"
            try:
                timings = _run_steps(args, input_path, sample, step_folders(staging))
                replace_results(sample_dir, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        remove_if_empty(made)  # a failed first run leaves no empty sample folder
        raise
    folders = layout(args.outdir, sample)
    logger.info(
        "[%s] finished in %.1f s (%s); results in %s",
        sample,
        time.perf_counter() - started,
        ", ".join(f"{s} {t:.1f} s" for s, t in timings.items()),
        folders["export"],
    )
    return folders


def check_run(args: argparse.Namespace) -> tuple[Path, str]:
    """Everything that can be checked before the first step: every option, the input, the sample name,
    where the results go and the device. Returns the input's path and the sample name."""
    from ._device import resolve_device
    from ._files.paths import check_name, is_inside
    from .options import COMMAND_OPTIONS, CommonOptions

    for group in (CommonOptions, *COMMAND_OPTIONS["run"]):
        group.pick(vars(args))
    input_path = Path(args.input)
    if not input_path.exists():
        raise ScdefrError(f"input not found: {input_path}")
    if args.sample is not None:
        sample = check_name(args.sample, "--sample")
    else:
        sample = check_name(default_sample_name(input_path), "--sample", derived_from=input_path)
    sample_dir = Path(args.outdir) / sample
    if is_inside(input_path, sample_dir):
        raise ScdefrError(
            f"--input {input_path} lies in {sample_dir}, whose results this run replaces: "
            "move it elsewhere, or choose another --outdir or --sample"
        )
    resolve_device(args.device)
    return input_path, sample


def _run_steps(args: argparse.Namespace, input_path: Path, sample: str, folders: dict[str, Path]) -> dict[str, float]:
    """The four steps into ``folders``; their times in seconds."""
    timings = {}
    for number, step in enumerate(STEPS, start=1):
        logger.info("[%s] step %d/%d: %s", sample, number, len(STEPS), step)
        step_started = time.perf_counter()
        namespace = step_namespace(step, step_io(step, input_path, folders, sample), args)
        step_module(step).main(namespace)
        timings[step] = time.perf_counter() - step_started
        logger.info("[%s] %s done in %.1f s", sample, step, timings[step])
        if step == "qc":
            _check_qc_output(folders["qc"] / f"{sample}.qc.h5ad", args)
    return timings


# --- one run per sample at a time, and results replaced all at once ---------------------------------
@contextlib.contextmanager
def sample_lock(sample_dir: Path) -> Iterator[None]:
    """Hold ``<sample_dir>/.scdefr-run.lock`` (flock: also between machines on most network file
    systems) for the block; refuse in one line if another run holds it. The file is removed at the end."""
    import fcntl

    path = sample_dir / LOCK_NAME
    while True:
        try:
            handle = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise ScdefrError(
                f"another 'scdefr run' is writing {sample_dir}: wait for it to end, "
                "or choose another --outdir or --sample"
            ) from None
        except OSError as exc:  # a file system without locks: run unguarded rather than not at all
            if exc.errno not in (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP):
                os.close(handle)
                raise
            logger.warning("cannot lock %s (%s): two runs into this sample would not be kept apart", path, exc.strerror)
        # The previous holder may have removed the file between our open and our lock: lock it anew.
        with contextlib.suppress(OSError):
            if os.fstat(handle).st_ino == os.stat(path).st_ino:
                break
        os.close(handle)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(handle)


def remove_stale_runs(sample_dir: Path) -> None:
    """Under the sample's lock, what killed runs left: finish a replacement that was under way (its
    staged results were complete), remove staging folders and replaced results."""
    for entry in sorted(sample_dir.iterdir()):
        if entry.name.startswith(SWAP) and entry.is_dir():
            logger.warning("completing the replacement of the results in %s that a killed run began", sample_dir)
            _swap_in(sample_dir, entry)
    for entry in sorted(sample_dir.iterdir()):
        if entry.name.startswith((STAGING, PREVIOUS)) and entry.is_dir():
            logger.info("removing %s, left by a run that was killed", entry)
            shutil.rmtree(entry)


def replace_results(sample_dir: Path, staging: Path) -> None:
    """Replace the sample's step folders by the staged ones.

    Renaming the staging folder to ``.swap-<tag>`` is the commit: a run killed after it has its swap
    completed by the next run (:func:`remove_stale_runs`). A failure during the swap (the system
    refused a rename) puts the previous folders back before the error is raised.
    """
    swap = sample_dir / (SWAP + staging.name.removeprefix(STAGING))
    os.rename(staging, swap)
    try:
        _swap_in(sample_dir, swap)
    except OSError:
        _swap_back(sample_dir, swap)
        raise


def _previous_of(sample_dir: Path, swap: Path) -> Path:
    return sample_dir / (PREVIOUS + swap.name.removeprefix(SWAP))


def _swap_in(sample_dir: Path, swap: Path) -> None:
    """Move each step folder of ``swap`` into ``sample_dir``, the one it replaces aside first; then
    remove what was replaced. Safe to repeat after an interruption."""
    previous = _previous_of(sample_dir, swap)
    previous.mkdir(exist_ok=True)
    for step in STEPS:
        new, current = swap / step, sample_dir / step
        if not new.exists():
            continue  # moved in already
        if current.exists() or current.is_symlink():
            if (previous / step).exists():
                shutil.rmtree(previous / step)
            os.rename(current, previous / step)
        os.rename(new, current)
    shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(swap, ignore_errors=True)


def _swap_back(sample_dir: Path, swap: Path) -> None:
    """Undo an unfinished :func:`_swap_in`: staged folders back into ``swap`` (then removed), the
    previous folders back into place. If this fails too, the next run completes the swap instead."""
    previous = _previous_of(sample_dir, swap)
    try:
        for step in STEPS:
            current = sample_dir / step
            if not (swap / step).exists() and current.exists():
                os.rename(current, swap / step)
            if (previous / step).exists():
                os.rename(previous / step, current)
    except OSError:
        logger.warning(
            "could not put back the previous results in %s; the next run completes the replacement", sample_dir
        )
        return
    shutil.rmtree(swap, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def _check_qc_output(qc_output: Path, args: argparse.Namespace) -> None:
    """What the QC'd data decide, checked before the steps that would fail on it: a K larger than
    the cells left, too few cells to choose K, an absent label column."""
    import h5py

    with h5py.File(qc_output, "r") as handle:
        obs = handle["obs"]
        n_cells = int(obs[obs.attrs.get("_index", "_index")].shape[0])
        columns = set(obs.keys()) - {obs.attrs.get("_index", "_index")}
    n_clusters = getattr(args, "n_clusters", "auto")
    if n_clusters != "auto" and n_clusters > n_cells:
        raise ScdefrError(
            f"--n-clusters {n_clusters} exceeds the {n_cells} cells left after QC: ask for at most {n_cells}, or auto"
        )
    if n_clusters == "auto" and n_cells < 3:
        raise ScdefrError(f"only {n_cells} cells are left after QC: too few to choose K (--n-clusters auto)")
    _check_label_column(columns, getattr(args, "label_key", None))


def _check_label_column(columns: set[str], label_key: str | None) -> None:
    """Fail before training, not after it, when the export step's label column is absent.

    Only the column names are read: the labels themselves stay unread until export.
    """
    if label_key is not None and label_key not in columns:
        raise ScdefrError(
            f"label column {label_key!r} is not in the input's obs (columns: {', '.join(sorted(columns)) or 'none'}): "
            "check --label-key"
        )
