"""The SCDEFR subworkflow inside another pipeline (docs/usage.md, 'The subworkflow in another
pipeline'): a host such as nf-core/scrnaseq has its own params and none of ours. With our
conf/modules.config blocks copied in, every option whose param the host lacks is left out, so each
step gets the CLI's defaults, never a `null`; the host's outdir places the results."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from nextflow import harness, render

ROOT = harness.ROOT
NFLINT = harness.SHARED / "tools" / "nflint" / "nflint"
# What nf-core/scrnaseq hands over: its meta map and an AnnData per sample (<sample>_raw_matrix.h5ad,
# <sample>_filtered_matrix.h5ad, ... per aligner), and a few params of its own
SCRNASEQ_META = {"id": "SAMPLE_1", "single_end": False, "expected_cells": 5000}
SCRNASEQ_PARAMS = {"outdir": "/host/results", "publish_dir_mode": "copy", "aligner": "simpleaf", "skip_multiqc": False}
STEPS = {"SCDEFR_QC": "qc", "SCDEFR_GRAPH": "graph", "SCDEFR_TRAIN": "train", "SCDEFR_EXPORT": "export"}
INPUT = {
    "qc": "SAMPLE_1_filtered_matrix.h5ad",
    "graph": "SAMPLE_1.qc.h5ad",
    "train": "SAMPLE_1.graph.h5ad",
    "export": "SAMPLE_1.trained.h5ad",
}

pytestmark = pytest.mark.skipif(harness.available() is not None, reason=str(harness.available()))


@pytest.mark.parametrize("process", STEPS)
def test_a_host_without_our_params_gets_the_cli_defaults(process):
    cli = pytest.importorskip("scdefr.cli")
    step = STEPS[process]
    task = render.render_task(
        process, [[SCRNASEQ_META, Path("/host/work") / INPUT[step]]], host=True, params=SCRNASEQ_PARAMS
    )
    assert "null" not in task.script and "[]" not in task.script
    assert task.undefined_params, "the host lacks our params: Nextflow reads them as null"
    words = shlex.split(task.script.replace("\\\n", " "))
    parser = cli.build_parser()
    given = parser.parse_args([step, *words[words.index(f"scdefr_{step}.py") + 1 :]])
    io = {
        "qc": ["--input", "x", "--output", "y"],
        "graph": ["--input", "x", "--output", "y"],
        "train": ["--input", "x", "--output", "y"],
        "export": ["--input", "x", "--outdir", "y"],
    }[step]
    defaults = parser.parse_args([step, *io])
    for name, value in vars(defaults).items():
        if name not in ("input", "output", "outdir", "prefix", "model_out", "threads", "device", "handler"):
            assert getattr(given, name) == value, f"{process}: --{name} is not the CLI default"
    assert task.publish_dir == [{"path": f"/host/results/SAMPLE_1/{step}", "mode": "copy"}]


def test_a_host_s_per_sample_settings_still_apply():
    train = render.render_task(
        "SCDEFR_TRAIN",
        [[{**SCRNASEQ_META, "n_clusters": 8}, Path("/w/SAMPLE_1.graph.h5ad")]],
        host=True,
        params=SCRNASEQ_PARAMS,
    )
    assert shlex.split(train.ext["args"]) == ["--n-clusters", "8"]
    export = render.render_task(
        "SCDEFR_EXPORT",
        [[{**SCRNASEQ_META, "label_key": "cell type"}, Path("/w/SAMPLE_1.trained.h5ad")]],
        host=True,
        params=SCRNASEQ_PARAMS,
    )
    assert shlex.split(export.ext["args"]) == ["--label-key", "cell type"]
    multiqc = render.render_task(
        "MULTIQC", [[Path("/w/a_mqc.tsv")], Path("/w/multiqc_config.yml")], host=True, params=SCRNASEQ_PARAMS
    )
    assert multiqc.ext["args"] == ""


def test_the_subworkflow_and_modules_read_no_params():
    """Everything a host must set comes through the channel and conf/modules.config, never params."""
    files = [
        "subworkflows/local/scdefr/main.nf",
        *(str(p.relative_to(ROOT)) for p in ROOT.glob("modules/local/**/main.nf")),
    ]
    code = harness.inspect(*files)
    assert {path: code[path]["params_used"] for path in files if code[path]["params_used"]} == {}


@pytest.mark.skipif(not NFLINT.exists() or shutil.which("java") is None, reason=f"needs {NFLINT} and java")
def test_a_host_pipeline_including_the_subworkflow_passes_nextflow_s_checks(tmp_path):
    host = tmp_path / "host"
    for folder in ("subworkflows/local/scdefr", "modules/local/scdefr"):
        shutil.copytree(ROOT / folder, host / folder, ignore=shutil.ignore_patterns("tests"))
    (host / "main.nf").write_text(
        "include { SCDEFR } from './subworkflows/local/scdefr/main'\n\n"
        "workflow {\n    main:\n"
        "    // as nf-core/scrnaseq emits them: [ meta, <sample>_filtered_matrix.h5ad ]\n"
        "    ch_h5ad = channel.fromPath(params.h5ad)\n"
        "        .map { h5ad -> [ [ id: h5ad.simpleName.replace('_filtered_matrix', '') ], h5ad ] }\n"
        "    SCDEFR ( ch_h5ad )\n"
        '    SCDEFR.out.clusters.view { meta, csv -> "${meta.id}: ${csv}" }\n'
        "}\n"
    )
    config = (ROOT / "conf/modules.config").read_text()
    (host / "nextflow.config").write_text("params {\n    h5ad   = null\n    outdir = 'results'\n}\n\n" + config)
    done = subprocess.run(
        [str(NFLINT), str(host)], capture_output=True, text=True, env={**os.environ, "NFLINT_PARANOID": "1"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line for line in done.stdout.splitlines() if "warning" in line and "`when` section" not in line] == []
