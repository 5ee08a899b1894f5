"""Runs each Nextflow module's script block inside its own image, chained qc -> graph -> train -> export.

The script blocks are rendered by tests/nextflow/harness.py (the real Groovy runtime over the module,
nextflow.config and conf/modules.config), so what runs is what Nextflow would run. Each task runs as
Nextflow's Docker executor runs it: its own folder under one work root, inputs staged as symlinks to
the previous task's outputs, the work root bind-mounted at the same path (-v WORK:WORK -w TASKDIR),
`/bin/bash -ue .command.sh`, a non-root user and no network. The `eval` outputs (tool versions) run in
the same image and are written to the task's versions.yml as nf-core's topic channel would collect them.
Then the declared outputs are matched against the task folder and the results are checked.

usage: run_modules.py --engine ENGINE --work DIR [--registry PREFIX] [--user UID:GID]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "nextflow"))
import harness  # noqa: E402  (tests/nextflow is not a package)

SAMPLE = "sim"
# Small and quick, as the unit tests: a few hundred cells, a few epochs.
SIMULATION = ["--n-cells", "400", "--n-genes", "1000", "--n-clusters", "4", "--seed", "0"]
PARAMS = {
    "input": "samplesheet.csv",
    "outdir": "results",
    "min_genes": 10,
    "min_cells": 3,
    "n_top_genes": 500,
    "n_pcs": 20,
    "n_neighbors": 10,
    "n_clusters": 4,
    "pretrain_epochs": 5,
    "epochs": 5,
    "seed": 0,
    "label_key": "cell_type",
}
STEPS = [
    ("qc", "SCDEFR_QC"),
    ("graph", "SCDEFR_GRAPH"),
    ("train", "SCDEFR_TRAIN"),
    ("export", "SCDEFR_EXPORT"),
]


class TierFailure(RuntimeError):
    """A step or a check failed: the tier reports it and exits non-zero."""


def log(message: str) -> None:
    print(f"run_modules: {message}", flush=True)


def container_run(
    engine: str, image: str, work: Path, taskdir: Path, user: str, command: list[str]
) -> subprocess.CompletedProcess:
    """One container as Nextflow starts it, plus no network (the steps need none)."""
    return subprocess.run(
        [
            engine,
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--user",
            user,
            "-v",
            f"{work}:{work}",
            "-w",
            str(taskdir),
            image,
            *command,
        ],
        capture_output=True,
        text=True,
    )


def image_of(task: dict, registry: str) -> str:
    """The image a rendered task names, with the registry prefix Nextflow's docker.registry adds."""
    (container,) = task["directives"]["container"]
    return f"{registry.rstrip('/')}/{container}" if registry else container


def hand_over(folder: Path, user: str) -> None:
    """As root, give a folder to the containers' user so the task can write into it."""
    if os.geteuid() == 0:
        os.chown(folder, *map(int, user.split(":")))


def render(step: str, process: str, input_path: Path, cpus: int) -> dict:
    request = {
        "module": str(ROOT / "modules" / "local" / "scdefr" / step / "main.nf"),
        "process": process,
        "configs": [str(ROOT / "nextflow.config")],
        "modules_config": str(ROOT / "conf" / "modules.config"),
        "params": PARAMS,
        "inputs": [[{"id": SAMPLE}, input_path]],
        "cpus": cpus,
        "container_engine": "docker",
        "project_dir": str(ROOT),
    }
    (task,) = harness.call("render", [request])
    if not task["when"]:
        raise TierFailure(f"{process}: its when: block is false for a plain sample")
    return task


def run_task(
    engine: str, registry: str, work: Path, user: str, index: int, step: str, process: str, input_path: Path, cpus: int
) -> Path:
    task = render(step, process, input_path, cpus)
    image = image_of(task, registry)
    taskdir = work / f"{index:02d}-{step}"
    taskdir.mkdir()
    (taskdir / input_path.name).symlink_to(input_path)  # Nextflow stages inputs as symlinks
    (taskdir / ".command.sh").write_text("#!/bin/bash -ue\n" + task["script"].strip() + "\n")
    hand_over(taskdir, user)

    log(f"{process} in {image}: {' '.join(task['script'].split())}")
    started = time.monotonic()
    done = container_run(engine, image, work, taskdir, user, ["/bin/bash", "-ue", ".command.sh"])
    (taskdir / ".command.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise TierFailure(f"{process} exited with {done.returncode} in {image}:\n{(done.stdout + done.stderr)[-4000:]}")

    versions = {}
    for output in task["outputs"]:
        for element in output["elements"]:
            if element["kind"] == "eval":
                evaluated = container_run(engine, image, work, taskdir, user, ["/bin/bash", "-c", element["value"]])
                if evaluated.returncode != 0 or not evaluated.stdout.strip():
                    raise TierFailure(f"{process}: eval '{element['value']}' failed: {evaluated.stderr.strip()}")
                tool = output["elements"][1]["value"]
                versions[tool] = evaluated.stdout.strip()
    (taskdir / "versions.yml").write_text(
        f'"{task["qualified_name"]}":\n' + "".join(f"    {tool}: {version}\n" for tool, version in versions.items())
    )

    patterns = [
        element["value"]
        for output in task["outputs"]
        if not output["optional"]
        for element in output["elements"]
        if element["kind"] == "path"
    ]
    matched = harness.call("match", {"workdir": str(taskdir), "patterns": patterns, "inputs": [input_path.name]})
    missing = [pattern for pattern, files in matched.items() if not files]
    if missing:
        raise TierFailure(f"{process}: declared outputs missing from {taskdir}: {missing}")
    produced = sorted(f for files in matched.values() for f in files)
    log(f"{process} done in {time.monotonic() - started:.0f} s: {produced}")

    (main_output,) = matched[patterns[0]]
    return taskdir / main_output


def check_results(export_dir: Path, trained: Path) -> None:
    """The published files parse and agree with each other."""
    import anndata
    import pandas as pd
    import yaml

    result = anndata.read_h5ad(export_dir / f"{SAMPLE}.h5ad")
    if "scdefr_cluster" not in result.obs:
        raise TierFailure(f"{SAMPLE}.h5ad has no obs['scdefr_cluster']")
    clusters = pd.read_csv(export_dir / f"{SAMPLE}.clusters.csv", dtype={"cell_id": str, "cluster": str})
    if clusters["cell_id"].duplicated().any():
        raise TierFailure("clusters.csv lists a cell more than once")
    trained_cells = set(anndata.read_h5ad(trained, backed="r").obs_names)
    if set(clusters["cell_id"]) != trained_cells or set(result.obs_names) != trained_cells:
        raise TierFailure("clusters.csv / the exported h5ad do not cover exactly the trained cells")
    exported = result.obs["scdefr_cluster"].astype(str)
    if not (clusters.set_index("cell_id")["cluster"].loc[exported.index] == exported).all():
        raise TierFailure("clusters.csv and obs['scdefr_cluster'] of the exported h5ad disagree")
    n_clusters = result.obs["scdefr_cluster"].nunique()
    if n_clusters != PARAMS["n_clusters"]:
        raise TierFailure(f"asked for {PARAMS['n_clusters']} clusters, got {n_clusters}")
    metrics = json.loads((export_dir / f"{SAMPLE}.metrics.json").read_text())
    for versions_file in export_dir.parent.glob("*/versions.yml"):
        versions = yaml.safe_load(versions_file.read_text())
        (tools,) = versions.values()
        if not tools.get("scdefr"):
            raise TierFailure(f"{versions_file}: no scdefr version")
    log(f"results check out: {len(clusters)} cells in {n_clusters} clusters; metrics: {json.dumps(metrics)[:300]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help="docker or podman (or a path to either)")
    parser.add_argument("--work", type=Path, required=True, help="empty work root (like Nextflow's work/)")
    parser.add_argument("--registry", default="", help="registry/organisation prefix of the images, as docker.registry")
    parser.add_argument(
        "--user", default=None, help="UID:GID in the containers (default: yours; a non-root one if you are root)"
    )
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    reason = harness.available()
    if reason:
        raise TierFailure(f"cannot render the modules' script blocks: {reason}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=False)
    # Nextflow runs the containers as the submitting user; as root, prove the images work for a uid
    # they have never heard of (HOME, caches), which is what users' `-u $(id -u):$(id -g)` gives them.
    user = args.user or (f"{os.getuid()}:{os.getgid()}" if os.geteuid() != 0 else "4242:4242")
    hand_over(work, user)

    started = time.monotonic()
    inputs = work / "00-simulate"
    inputs.mkdir()
    hand_over(inputs, user)
    qc_image = image_of(render("qc", "SCDEFR_QC", inputs / f"{SAMPLE}.h5ad", 1), args.registry)
    done = container_run(
        args.engine, qc_image, work, inputs, user, ["scdefr", "simulate", *SIMULATION, "--output", f"{SAMPLE}.h5ad"]
    )
    if done.returncode != 0:
        raise TierFailure(f"scdefr simulate failed:\n{done.stderr[-4000:]}")
    current = inputs / f"{SAMPLE}.h5ad"
    outputs = {}
    for index, (step, process) in enumerate(STEPS, start=1):
        current = run_task(args.engine, args.registry, work, user, index, step, process, current, args.cpus)
        outputs[step] = current
    check_results(outputs["export"].parent, outputs["train"])
    log(f"chain qc -> graph -> train -> export passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (TierFailure, harness.HarnessError) as error:
        print(f"run_modules: FAILED: {error}", file=sys.stderr)
        sys.exit(1)
