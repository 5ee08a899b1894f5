"""Speed and memory against the number of cells: simulated counts (2,000 genes) through the real
command line, each step in its own process (wall time, peak RSS; on CUDA also the training's peak
GPU memory). Each process's log is kept beside its outputs (``sim<N>.<command>.log``).

For every size it records ``scdefr run`` end to end and ``scdefr train`` alone (re-run on the
graph file the runner wrote), plus the time per epoch the training step logs. With
``--train-args "--pretrain-epochs 5 ..."`` fewer epochs can be run and the full-schedule time
extrapolated from the per-epoch time; such rows are marked ``extrapolated`` in the table.

    python benchmarks/scaling.py --sizes 5000 10000 20000 --threads 2
    python benchmarks/scaling.py --sizes 50000 100000 --train-args "--pretrain-epochs 3 --epochs 3"
    python benchmarks/scaling.py --sizes 20000 100000 --threads 16 --train-args "--device cuda" --n-clusters auto
    python benchmarks/scaling.py --sizes 5000 50000 --commands train --seeds 0 1 2 --workdir W \
        --train-args "--pretrain-epochs 2 --epochs 3 --log-every 1"      # time per epoch, three seeds

The ``scdefr run`` rows also hold each step's wall time and the clusters found (K, and ARI against
the simulated types, which only score the result).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import LABEL_KEY, append_rows

logger = logging.getLogger("benchmarks.scaling")
RESULTS_FILE = "scaling.csv"
SCDEFR = [sys.executable, "-m", "scdefr"]
N_GENES = 2000
N_TYPES = 8


def timed(command: list[str], log_path: Path) -> dict:
    """Run a command with its stderr (the progress log) in ``log_path``; return its wall seconds,
    peak RSS (MB) and log, or raise with the log's end.

    The peak is the child's own ``ru_maxrss`` from ``os.wait4`` (Linux: kB), so no GNU time is needed:
    the GPU machines have none.
    """
    with open(log_path, "w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        stderr.seek(0)
        log = stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{log[-3000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "log": log}


EPOCH_LINE = re.compile(r"(pretrain|joint) epoch (\d+)/(\d+): .*\[([\d.]+)s\]")
STEP_LINE = re.compile(r"\] (qc|graph|train|export) done in ([\d.]+) s")
EXPORT_LINE = re.compile(r"cells in (\d+) clusters, .*ARI (-?[\d.]+)")
GPU_PEAK_LINE = re.compile(r"peak GPU memory: ([\d.]+) GB")


def epoch_seconds(log: str) -> dict:
    """Seconds per epoch of each phase, from the training progress lines ('<phase> epoch i/n: ... [t s]',
    t counted from the start of the phase)."""
    found = {}
    for phase, epoch, n_epochs, elapsed in EPOCH_LINE.findall(log):
        found[f"{phase}_epochs"] = int(n_epochs)
        found[f"{phase}_s_per_epoch"] = round(float(elapsed) / int(epoch), 3)
    return found


def run_steps(log: str) -> dict:
    """Wall seconds of each step of ``scdefr run`` and the clusters it found (K, ARI against the
    simulated types), from the runner's and the export's log lines."""
    found = {f"run_{step}_s": float(seconds) for step, seconds in STEP_LINE.findall(log)}
    exported = EXPORT_LINE.search(log)
    if exported:
        found.update(run_n_clusters_found=int(exported.group(1)), run_ari=float(exported.group(2)))
    return found


def gpu_peak(log: str) -> dict:
    """The training step's peak GPU memory (GB) where it ran on CUDA."""
    peak = GPU_PEAK_LINE.search(log)
    return {"gpu_peak_gb": float(peak.group(1))} if peak else {}


def simulated_counts(n_cells: int, workdir: Path, threads: int, simulate_args: list[str] = ()) -> Path:
    """The simulated counts of one size (seed 0), written once and reused by later runs.

    ``simulate_args`` go to ``scdefr simulate``: e.g. ``--parts 16 --compression none`` for millions
    of cells (other counts of the same model, drawn in parallel, written without compression)."""
    counts = workdir / f"sim{n_cells}.h5ad"
    if not counts.exists():
        subprocess.run(
            [
                *SCDEFR,
                "simulate",
                "--n-cells",
                str(n_cells),
                "--n-genes",
                str(N_GENES),
                "--n-clusters",
                str(N_TYPES),
                "--output",
                str(counts),
                "--seed",
                "0",
                "--threads",
                str(threads),
                "--quiet",
                *simulate_args,
            ],
            check=True,
        )
    return counts


def run_size(
    n_cells: int,
    workdir: Path,
    threads: int,
    train_args: list[str],
    tag: str,
    commands: tuple[str, ...] = ("run", "train"),
    n_clusters: str = str(N_TYPES),
    seed: int = 0,
) -> dict:
    counts = simulated_counts(n_cells, workdir, threads)
    sample = f"sim{n_cells}"
    common = ["--seed", str(seed), "--threads", str(threads)]
    row = {
        "tag": tag,
        "n_cells": n_cells,
        "n_genes": N_GENES,
        "threads": threads,
        "seed": seed,
        "train_args": shlex.join(train_args),
        "n_clusters": n_clusters,
    }
    graph = workdir / sample / "graph" / f"{sample}.graph.h5ad"
    if "run" not in commands and not graph.exists():  # the train step alone still needs its input
        qc_out = workdir / f"{sample}.qc.h5ad"
        qc = timed(
            [*SCDEFR, "qc", "--input", str(counts), "--output", str(qc_out), *common], workdir / f"{sample}.qc.log"
        )
        graph.parent.mkdir(parents=True, exist_ok=True)
        graph_step = timed(
            [*SCDEFR, "graph", "--input", str(qc_out), "--output", str(graph), *common], workdir / f"{sample}.graph.log"
        )
        row.update(
            qc_wall_s=qc["wall_s"],
            qc_peak_rss_mb=qc["peak_rss_mb"],
            graph_wall_s=graph_step["wall_s"],
            graph_peak_rss_mb=graph_step["peak_rss_mb"],
        )
    if "run" in commands:
        run = timed(
            [
                *SCDEFR,
                "run",
                "--input",
                str(counts),
                "--outdir",
                str(workdir),
                "--sample",
                sample,
                "--n-clusters",
                n_clusters,
                "--label-key",
                LABEL_KEY,
                *train_args,
                *common,
            ],
            workdir / f"{sample}.run.log",
        )
        row.update(run_wall_s=run["wall_s"], run_peak_rss_mb=run["peak_rss_mb"], **run_steps(run["log"]))
        row.update(
            {f"run_{key}": value for key, value in {**epoch_seconds(run["log"]), **gpu_peak(run["log"])}.items()}
        )
    if "train" in commands:
        trained = workdir / f"{sample}.train_only.h5ad"
        train = timed(
            [
                *SCDEFR,
                "train",
                "--input",
                str(graph),
                "--output",
                str(trained),
                "--n-clusters",
                n_clusters,
                *train_args,
                *common,
            ],
            workdir / f"{sample}.train.log",
        )
        row.update(
            train_wall_s=train["wall_s"],
            train_peak_rss_mb=train["peak_rss_mb"],
            **epoch_seconds(train["log"]),
            **gpu_peak(train["log"]),
        )
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[5000, 10000, 20000, 50000, 100000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-args", default="", help="extra options for scdefr run/train, e.g. fewer epochs")
    parser.add_argument("--tag", default="default")
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0],
        help="seeds of the steps, one row each (the simulated counts are always seed 0's; "
        "with --commands train a graph file already in --workdir is reused)",
    )
    parser.add_argument("--n-clusters", default=str(N_TYPES), help="a number, or 'auto' (the package default)")
    parser.add_argument(
        "--commands",
        nargs="+",
        choices=("simulate", "run", "train"),
        default=["run", "train"],
        help="'run': scdefr run end to end; 'train': scdefr train alone on the run's graph file; "
        "'simulate' alone: only write the counts into --workdir (to prepare them beforehand)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    parser.add_argument(
        "--simulate-args", default="", help="extra options for scdefr simulate, e.g. '--parts 16 --compression none'"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="scdefr_scaling_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n_cells in args.sizes:
            if args.commands == ["simulate"]:
                logger.info(
                    "counts ready: %s",
                    simulated_counts(n_cells, workdir, args.threads, shlex.split(args.simulate_args)),
                )
                continue
            for seed in args.seeds:
                row = run_size(
                    n_cells,
                    workdir,
                    args.threads,
                    shlex.split(args.train_args),
                    args.tag,
                    tuple(args.commands),
                    args.n_clusters,
                    seed,
                )
                append_rows(RESULTS_FILE, [row])
                logger.info("%s", row)


if __name__ == "__main__":
    main()
