"""Shell safety: what reaches a script block (sample and file names, label_key, multiqc_title, every
param in ext.args) arrives as one argument, exactly as given, and never runs as a command.

Each process's script and stub block is rendered by the Groovy harness with hostile values and run
with bash in a staged task folder. The step scripts on PATH are stand-ins that record their argv, so
what the shell hands over is compared word for word; a marker file shows whether anything ran."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nextflow import harness, render

ROOT = harness.ROOT
DATA = ROOT / "assets/test_data/sim_300x500.h5ad"
STEPS = {"SCDEFR_QC": "qc", "SCDEFR_GRAPH": "graph", "SCDEFR_TRAIN": "train", "SCDEFR_EXPORT": "export"}
RECORDER = "#!/usr/bin/env python3\nimport json, sys\nopen('argv.json', 'w').write(json.dumps(sys.argv[1:]))\n"

pytestmark = pytest.mark.skipif(harness.available() is not None, reason=str(harness.available()))


MARKER = "INJECTED"  # what an injected command would create in the task folder (the commands run there)


def hostile() -> list[str]:
    """Names that break or hijack an unquoted (or double-quoted) shell word."""
    return [
        f"cell_type;touch${{IFS}}{MARKER};:",
        f"$(touch {MARKER})",
        f"`touch {MARKER}`",
        "my sample",
        "pbmc(1)",
        'it\'s "quoted"',
        "two\nlines",
    ]


@pytest.fixture
def recorders(tmp_path):
    folder = tmp_path / "recorders"
    folder.mkdir()
    for name in [*(f"scdefr_{step}.py" for step in STEPS.values()), "multiqc"]:
        (folder / name).write_text(RECORDER)
        (folder / name).chmod(0o755)
    return folder


def _run(task, workdir: Path, recorders: Path) -> list[str]:
    environment = {
        **os.environ,
        "PATH": f"{recorders}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
    }
    done = subprocess.run([*render.SHELL, ".command.sh"], cwd=workdir, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, f"{task.process}: {done.stderr[-2000:]}\n{task.script}"
    assert not (workdir / MARKER).exists(), f"{task.process} ran an injected command:\n{task.script}"
    return json.loads((workdir / "argv.json").read_text()) if (workdir / "argv.json").exists() else []


def _value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


@pytest.mark.parametrize("process", STEPS)
def test_hostile_sample_and_file_names_reach_the_step_as_one_argument(process, tmp_path, recorders):
    for index, name in enumerate(hostile()):
        counts = tmp_path / f"in{index}" / f"{name}.h5ad"
        counts.parent.mkdir()
        counts.write_bytes(b"")
        task = render.render_task(process, [[{"id": name}, counts]])
        argv = _run(task, render.stage(task, tmp_path / f"task{index}"), recorders)
        assert _value(argv, "--input") == counts.name
        if process == "SCDEFR_EXPORT":
            assert _value(argv, "--prefix") == name
        else:
            assert _value(argv, "--output").startswith(name + ".")


@pytest.mark.parametrize("process", STEPS)
def test_stub_blocks_create_the_outputs_of_hostile_names(process, tmp_path, recorders):
    for index, name in enumerate(hostile()):
        counts = tmp_path / f"in{index}" / "s.h5ad"
        counts.parent.mkdir()
        counts.write_bytes(b"")
        task = render.render_task(process, [[{"id": name}, counts]], section="stub")
        workdir = render.stage(task, tmp_path / f"task{index}")
        _run(task, workdir, recorders)
        if any(c in name for c in "*?[]{}"):
            # output names are globs: Nextflow stops with "Missing output file(s)" (our samplesheet refuses such names)
            with pytest.raises(FileNotFoundError):
                render.collect_outputs(task, workdir)
            continue
        collected = render.collect_outputs(task, workdir)
        assert all(all(p.name.startswith(name) for p in collected[o.emit]) for o in task.outputs if o.paths)


def test_label_key_and_every_text_param_reach_the_step_verbatim(tmp_path, recorders):
    counts = tmp_path / "s1.trained.h5ad"
    counts.write_bytes(b"")
    for index, value in enumerate(hostile()):
        for meta, params in (({"id": "s1", "label_key": value}, {}), ({"id": "s1"}, {"label_key": value})):
            task = render.render_task("SCDEFR_EXPORT", [[meta, counts]], params=params)
            argv = _run(task, render.stage(task, tmp_path / f"export{index}_{len(params)}"), recorders)
            assert _value(argv, "--label-key") == value
        task = render.render_task(
            "SCDEFR_TRAIN",
            [[{"id": "s1", "n_clusters": value}, counts]],
            params={"hidden_dims": value, "checkpoint_dir": value},
        )
        argv = _run(task, render.stage(task, tmp_path / f"train{index}"), recorders)
        assert (_value(argv, "--n-clusters"), _value(argv, "--hidden-dims"), _value(argv, "--checkpoint-dir")) == (
            value,
        ) * 3


def test_multiqc_title_and_config_path_reach_multiqc_verbatim(tmp_path, recorders):
    for index, title in enumerate(hostile()):
        config = tmp_path / f"c{index}" / f"{title}.yml"
        config.parent.mkdir()
        config.write_text("{}")
        report = tmp_path / f"r{index}" / "s1_mqc.tsv"
        report.parent.mkdir()
        report.write_text("Sample\tx\n")
        task = render.render_task("MULTIQC", [[report], config], params={"multiqc_title": title})
        argv = _run(task, render.stage(task, tmp_path / f"multiqc{index}"), recorders)
        assert _value(argv, "--title") == title and _value(argv, "--config") == config.name


@pytest.mark.parametrize("name", ["my sample.h5ad", "pbmc(1).h5ad", "two\nlines.h5ad", "x;touch${IFS}y;:.h5ad"])
def test_a_sample_name_from_a_hostile_file_name_stops_the_run_with_one_line(name):
    """main.nf names a single input after its file: such a name is refused before any task starts."""
    shown = repr(name.removesuffix(".h5ad"))  # Groovy's inspect() quotes and escapes like repr() here
    answer = harness.call_function(
        "main.nf",
        "checkedSamples",
        [[{"id": name.removesuffix(".h5ad")}, "counts"]],
        f"the file name {repr(name)}; set --sample to name it",
    )
    assert answer["error"].startswith(f"Sample name {shown} ") and "--sample" in answer["error"]
    assert "\n" not in answer["error"]


@pytest.mark.slow
def test_the_real_qc_step_works_on_a_file_name_with_spaces_quotes_and_brackets(tmp_path):
    """What the quoting hands over, the step itself takes: a real run on such a file."""
    counts = tmp_path / "input" / "pbmc(1) it's.h5ad"
    counts.parent.mkdir()
    shutil.copy(DATA, counts)
    task = render.render_task("SCDEFR_QC", [[{"id": "pbmc 1"}, counts]], profile_configs=("conf/test.config",))
    workdir = render.stage(task, tmp_path / "qc")
    render.execute(task, workdir, env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert render.collect_outputs(task, workdir)["h5ad"] == [workdir / "pbmc 1.qc.h5ad"]
