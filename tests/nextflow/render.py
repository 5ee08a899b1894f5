"""Run one Nextflow process of this pipeline the way Nextflow would, without Nextflow.

For the container tests (containers/) as much as for tests/test_nextflow_*.py:

    from tests.nextflow import render            # or, with tests/ on sys.path: from nextflow import render
    task = render.render_task("SCDEFR_QC", [[{"id": "s1"}, Path("counts.h5ad")]], cpus=2)
    workdir = render.stage(task, tmp_path / "qc")           # symlinked inputs + .command.sh
    render.execute(task, workdir)                           # bash .command.sh, then the eval commands
    files = render.collect_outputs(task, workdir)           # {emit: [Path, ...]}, checked against the globs

``render_task`` evaluates, with the real Groovy runtime (tests/nextflow/NfHarness.groovy), the
process's directives, input and output declarations and its script (or stub) block, with the params
of nextflow.config (+ the given profile configs), and ext.args / ext.prefix / publishDir of the
matching withName selector in conf/modules.config. Anything it cannot evaluate is an error
(harness.HarnessError), never a skipped line.

To run a task in a container, pass ``command_prefix`` to ``execute``, e.g.
``["docker", "run", "--rm", "-v", f"{workdir}:{workdir}", "-w", str(workdir), task.container]``: the
script and the eval commands then run inside it (input symlinks must resolve there too: mount their
sources, or stage with ``copy=True``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

try:
    from . import harness
except ImportError:  # imported as a top-level module, with tests/nextflow on sys.path (containers/)
    import harness

ROOT = harness.ROOT

# Where each process lives and its fully qualified name inside the pipeline (withName matches either).
MODULES = {
    "SCDEFR_QC": "modules/local/scdefr/qc/main.nf",
    "SCDEFR_GRAPH": "modules/local/scdefr/graph/main.nf",
    "SCDEFR_TRAIN": "modules/local/scdefr/train/main.nf",
    "SCDEFR_EXPORT": "modules/local/scdefr/export/main.nf",
    "MULTIQC": "modules/local/multiqc/main.nf",
}
QUALIFIED = {
    "SCDEFR_QC": "SCDEFR_PIPELINE:SCDEFR:SCDEFR_QC",
    "SCDEFR_GRAPH": "SCDEFR_PIPELINE:SCDEFR:SCDEFR_GRAPH",
    "SCDEFR_TRAIN": "SCDEFR_PIPELINE:SCDEFR:SCDEFR_TRAIN",
    "SCDEFR_EXPORT": "SCDEFR_PIPELINE:SCDEFR:SCDEFR_EXPORT",
    "MULTIQC": "SCDEFR_PIPELINE:MULTIQC",
}
# nextflow.config's process.shell (a structure test keeps the two equal)
SHELL = ["/bin/bash", "-C", "-e", "-u", "-o", "pipefail"]


@dataclass
class Output:
    """One output declaration: ``tuple val(meta), path("s1.qc.h5ad"), emit: h5ad`` and the like."""

    emit: str | None
    topic: str | None
    optional: bool
    elements: list[dict]  # {"kind": "val"|"path"|"eval"|..., "value": ...}

    @property
    def paths(self) -> list[str]:
        return [e["value"] for e in self.elements if e["kind"] == "path"]

    @property
    def evals(self) -> list[str]:
        return [e["value"] for e in self.elements if e["kind"] == "eval"]


@dataclass
class RenderedTask:
    process: str
    qualified_name: str
    inputs: dict  # name -> value; staged files as {"name": file name, "source": absolute path}
    directives: dict  # name -> [values], e.g. {"label": ["process_low"], "container": ["scdefr/qc:0.2.0"]}
    ext: dict  # evaluated task.ext.* (args, prefix, ...)
    publish_dir: list[dict]  # evaluated publishDir entries: {"path": ..., "mode": ...}
    when: bool
    script: str
    outputs: list[Output]
    params: dict
    section: str = "script"
    undefined_params: list = field(default_factory=list)  # host mode: params the config read but the host lacks
    versions: dict = field(default_factory=dict)  # filled by execute(): tool -> eval output

    @property
    def container(self) -> str:
        return self.directives["container"][-1]

    @property
    def labels(self) -> list[str]:
        return list(self.directives.get("label", []))

    def staged_files(self) -> dict[str, str]:
        """File name in the task folder -> source path, for every path input."""
        staged = {}
        for value in self.inputs.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and set(item) == {"name", "source"}:
                    staged[item["name"]] = item["source"]
        return staged


def render_task(
    process: str,
    inputs: list,
    *,
    section: str = "script",
    cpus: int = 1,
    accelerator: int | None = None,
    container_engine: str | None = None,
    profile_configs: tuple[str, ...] = (),
    params: dict | None = None,
    modules_config: str | None = "conf/modules.config",
    module: str | None = None,
    host: bool = False,
) -> RenderedTask:
    """Evaluate ``process`` for one task. ``inputs`` follow the input declarations in order: a tuple
    input is a list, a meta map a dict, a file a ``pathlib.Path``. ``params`` override the config's;
    with ``host=True`` they are all the params there are (another pipeline including our modules):
    any other name reads as null, as Nextflow gives it, and is listed in ``undefined_params``."""
    request = {
        "module": module or MODULES[process],
        "process": process,
        "qualified_name": QUALIFIED.get(process, process),
        "configs": ["nextflow.config", *profile_configs],
        "modules_config": modules_config,
        "params": params or {},
        "params_mode": "host" if host else "pipeline",
        "inputs": inputs,
        "cpus": cpus,
        "accelerator": accelerator,
        "container_engine": container_engine,
        "section": section,
        "project_dir": str(ROOT),
    }
    answer = harness.call("render", [request])[0]
    answer["outputs"] = [Output(**o) for o in answer["outputs"]]
    return RenderedTask(section=section, **answer)


def stage(task: RenderedTask, workdir: Path, *, copy: bool = False) -> Path:
    """A task folder as Nextflow makes it: inputs symlinked (or copied) under their names, and the
    rendered script as .command.sh."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, source in task.staged_files().items():
        target = workdir / name  # may sit in a subfolder (stageAs: '?/*')
        target.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            (shutil.copytree if Path(source).is_dir() else shutil.copy2)(source, target)
        else:
            target.symlink_to(source)
    (workdir / ".command.sh").write_text(f"#!{SHELL[0]}\n{task.script}\n")
    return workdir


def execute(
    task: RenderedTask,
    workdir: Path,
    *,
    command_prefix: list[str] = (),
    env: dict | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Runs .command.sh with the pipeline's shell options, then each eval output command (as
    Nextflow does after the script); raises CalledProcessError with the task's stderr on failure."""
    environment = {**os.environ, **(env or {})}
    environment["PATH"] = f"{ROOT / 'bin'}{os.pathsep}{environment['PATH']}"  # Nextflow puts bin/ on PATH
    done = subprocess.run(
        [*command_prefix, *SHELL, ".command.sh"],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (Path(workdir) / ".command.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    for output in task.outputs:
        for command in output.evals:
            version = subprocess.run(
                [*command_prefix, *SHELL, "-c", command],
                cwd=workdir,
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            tool = next(e["value"] for e in output.elements if e["kind"] == "val" and e["value"] != task.qualified_name)
            task.versions[tool] = version.stdout.strip()
    return done


def collect_outputs(task: RenderedTask, workdir: Path) -> dict[str, list[Path]]:
    """Files matching each output's path patterns (Java glob, staged inputs and hidden files left
    out, as Nextflow collects them). A required pattern without a match raises FileNotFoundError."""
    patterns = sorted({p for output in task.outputs for p in output.paths})
    matched = harness.call(
        "match", {"workdir": str(workdir), "patterns": patterns, "inputs": sorted(task.staged_files())}
    )
    collected = {}
    for output in task.outputs:
        files = []
        for pattern in output.paths:
            if not matched[pattern] and not output.optional:
                raise FileNotFoundError(
                    f"{task.process}: output '{output.emit}' pattern {pattern!r} matched nothing in {workdir}"
                )
            files += [Path(workdir) / name for name in matched[pattern]]
        collected[output.emit or f"output{len(collected) + 1}"] = files
    return collected


def publish(task: RenderedTask, collected: dict[str, list[Path]]) -> list[Path]:
    """Copies the collected outputs to the task's publishDir path(s), as publishDir mode 'copy' does."""
    published = []
    for target in task.publish_dir:
        folder = Path(target["path"])
        folder.mkdir(parents=True, exist_ok=True)
        for files in collected.values():
            for source in files:
                destination = folder / source.name
                if source.is_dir():
                    shutil.copytree(source, destination, dirs_exist_ok=True)
                else:
                    shutil.copy2(source, destination)
                published.append(destination)
    return published
