"""The processes' script blocks, exactly as written and rendered by the Groovy runtime with the test
profile and conf/modules.config, run with bash in staged task folders: qc -> graph -> train -> export
as subworkflows/local/scdefr wires them. Their declared outputs must match the files, the versions
topic must report the installed tools, and the published results must be those of `scdefr run`."""

from __future__ import annotations

import filecmp
import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nextflow import harness, render

ROOT = harness.ROOT
DATA = ROOT / "assets/test_data/sim_300x500.h5ad"
META = {"id": "sim", "label_key": "cell_type", "n_clusters": "4"}
CHAIN = [("qc", "SCDEFR_QC"), ("graph", "SCDEFR_GRAPH"), ("train", "SCDEFR_TRAIN"), ("export", "SCDEFR_EXPORT")]
# The environment a container would give: this virtualenv's python and scdefr first on PATH
ENV = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}

pytestmark = [
    pytest.mark.skipif(harness.available() is not None, reason=str(harness.available())),
    pytest.mark.skipif(not (ROOT / "src/scdefr/cli/train.py").exists(), reason="scdefr train is not written yet"),
]


def _run_step(process: str, inputs: list, workdir: Path, outdir: Path) -> tuple[render.RenderedTask, dict]:
    """One task as Nextflow runs it: render (test profile, one CPU), stage, execute, collect."""
    task = render.render_task(
        process, inputs, cpus=1, profile_configs=("conf/test.config",), params={"outdir": str(outdir)}
    )
    assert task.when
    render.stage(task, workdir)
    try:
        render.execute(task, workdir, env=ENV)
    except subprocess.CalledProcessError as failure:
        pytest.fail(f"{process} failed ({failure.returncode}):\n{task.script}\n{failure.stderr[-3000:]}")
    return task, render.collect_outputs(task, workdir)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The four tasks of one sample, each output handed to the next step as the subworkflow does;
    meanwhile `scdefr run` with the same options (from the rendered ext.args) in another process."""
    base = tmp_path_factory.mktemp("nextflow_chain")
    options = [
        option
        for _, process in CHAIN
        for option in shlex.split(
            render.render_task(process, [[META, DATA]], profile_configs=("conf/test.config",)).ext["args"]
        )
    ]
    runner = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "scdefr"),
            "run",
            "--input",
            str(DATA),
            "--outdir",
            str(base / "runner"),
            "--sample",
            "sim",
            "--threads",
            "1",
            "--device",
            "cpu",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV},
    )
    results = {}
    upstream = DATA
    try:
        for step, process in CHAIN:
            task, collected = _run_step(process, [[META, upstream]], base / "work" / step, base / "results")
            render.publish(task, collected)
            results[step] = (task, collected)
            upstream = collected["h5ad"][0]
    finally:
        _, runner_log = runner.communicate(timeout=900)
    return base, results, (runner.returncode, runner_log)


def test_the_chain_is_wired_as_the_subworkflow_wires_it():
    (workflow,) = harness.inspect("subworkflows/local/scdefr/main.nf")["subworkflows/local/scdefr/main.nf"]["workflows"]
    calls = [" ".join(statement.split()) for statement in workflow["main"]]
    assert calls[0] == f"{CHAIN[0][1]} ( {workflow['take'][0].split()[0]} )"
    for (_, upstream), (_, process) in zip(CHAIN, CHAIN[1:], strict=False):
        assert f"{process} ( {upstream}.out.h5ad )" in calls


@pytest.mark.slow
def test_every_step_fills_each_declared_output(chain):
    _, results, _ = chain
    import scdefr

    for step, (task, collected) in results.items():
        for output in task.outputs:
            if output.paths:
                assert collected[output.emit], f"{step}: {output.emit} is empty"
        assert task.versions["scdefr"] == scdefr.__version__
        other = "torch" if step == "train" else "scanpy"
        assert task.versions[other] == importlib.metadata.version(other)
        assert "--threads 1" in task.script
    assert "--device cpu" in results["train"][0].script
    exported = {p.name for files in results["export"][1].values() for p in files}
    assert {"sim.h5ad", "sim.clusters.csv", "sim.embedding.csv", "sim.metrics.json", "sim.umap.png"} <= exported


@pytest.mark.slow
def test_trained_clusters_follow_the_samplesheet_number_of_clusters(chain):
    anndata = pytest.importorskip("anndata")
    _, results, _ = chain
    trained = anndata.read_h5ad(results["train"][1]["h5ad"][0])
    assert trained.obs["scdefr_cluster"].nunique() == int(META["n_clusters"])
    assert trained.obsm["X_scdefr"].shape[0] == trained.n_obs


@pytest.mark.slow
def test_published_results_equal_those_of_scdefr_run(chain):
    base, _, (returncode, log) = chain
    assert returncode == 0, log[-3000:]
    published, runner = base / "results" / "sim", base / "runner" / "sim"

    def files(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert files(published) == files(runner)
    for name in ("export/sim.clusters.csv", "export/sim.embedding.csv"):
        assert filecmp.cmp(published / name, runner / name, shallow=False), f"{name} differs from scdefr run's"


def test_stub_blocks_create_every_declared_output(tmp_path):
    upstream = tmp_path / "sim.h5ad"
    upstream.write_bytes(b"")
    for step, process in CHAIN:
        task = render.render_task(process, [[META, upstream]], section="stub", profile_configs=("conf/test.config",))
        workdir = render.stage(task, tmp_path / step)
        render.execute(task, workdir, env=ENV)
        collected = render.collect_outputs(task, workdir)
        assert all(collected[o.emit] for o in task.outputs if o.paths), step
        upstream = collected["h5ad"][0]
    mqc = tmp_path / "sim_mqc.tsv"
    mqc.write_text("Sample\tclusters\nsim\t4\n")
    task = render.render_task("MULTIQC", [[mqc], ROOT / "assets/multiqc_config.yml"], section="stub")
    workdir = render.stage(task, tmp_path / "multiqc")
    assert (workdir / "1" / "sim_mqc.tsv").is_symlink()  # stageAs: '?/*'
    subprocess.run([*render.SHELL, ".command.sh"], cwd=workdir, check=True)  # no multiqc here for the eval
    assert set(render.collect_outputs(task, workdir)) >= {"report", "data"}


@pytest.mark.skipif(shutil.which("multiqc") is None, reason="multiqc is not installed (it runs in its container)")
def test_multiqc_reads_the_exported_custom_content(chain, tmp_path):
    _, results, _ = chain
    files = results["export"][1]["multiqc"]
    task = render.render_task("MULTIQC", [files, ROOT / "assets/multiqc_config.yml"])
    workdir = render.stage(task, tmp_path / "multiqc")
    render.execute(task, workdir, env=ENV)
    assert render.collect_outputs(task, workdir)["report"]
