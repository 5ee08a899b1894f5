"""Every Nextflow and config file of the pipeline parses with the Groovy 4 parser, and the harness
that reads them refuses broken files and expressions it cannot evaluate (so a pass means something)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nextflow import harness, render

ROOT = harness.ROOT
NF_FILES = sorted(
    p.relative_to(ROOT)
    for pattern in ("*.nf", "workflows/**/*.nf", "subworkflows/**/*.nf", "modules/**/*.nf")
    for p in ROOT.glob(pattern)
)
CONFIG_FILES = sorted(p.relative_to(ROOT) for p in [ROOT / "nextflow.config", *ROOT.glob("conf/*.config")])
NF_TEST_FILES = sorted(
    p.relative_to(ROOT)
    for p in [ROOT / "nf-test.config", *ROOT.glob("tests/*.nf.test"), *ROOT.glob("*/local/**/*.nf.test")]
)

pytestmark = pytest.mark.skipif(harness.available() is not None, reason=str(harness.available()))


def test_pipeline_files_are_found():
    names = {str(p) for p in NF_FILES + CONFIG_FILES}
    assert {
        "main.nf",
        "workflows/scdefr.nf",
        "subworkflows/local/scdefr/main.nf",
        "nextflow.config",
        "conf/base.config",
        "conf/modules.config",
        "conf/test.config",
    } <= names
    assert {f"modules/local/scdefr/{step}/main.nf" for step in ("qc", "graph", "train", "export")} <= names


def test_every_nextflow_and_config_file_parses():
    assert len(NF_TEST_FILES) >= 8  # nf-test.config, the pipeline's, the subworkflow's and 5 modules' tests
    files = NF_FILES + CONFIG_FILES + NF_TEST_FILES
    errors = harness.parse(*files)
    assert set(errors) == {str(p) for p in files}
    assert {name: found for name, found in errors.items() if found} == {}


@pytest.mark.parametrize(
    ("suffix", "text", "line"),
    [
        (".nf", 'process BROKEN {\n    input:\n    val x\n\n    script:\n    """\n    echo ${x\n    """\n}\n', 8),
        (".nf", "workflow {\n    main:\n    FOO(\n}\n", 1),
        (".config", "process {\n    withName: 'A' {\n        cpus = 2\n    }\n", 1),
        (".config", "params {\n    outdir = 'a' 'b' = 3\n}\n", 2),
    ],
)
def test_a_broken_file_is_reported_with_its_line(tmp_path, suffix, text, line):
    broken = tmp_path / f"broken{suffix}"
    broken.write_text(text)
    errors = harness.parse(broken)[str(broken)]
    assert errors, "the parser accepted a broken file"
    assert errors[0]["line"] == line


def _module(tmp_path: Path, script: str) -> Path:
    module = tmp_path / "main.nf"
    module.write_text(
        "process PROBE {\n    tag \"${meta.id}\"\n    label 'process_single'\n\n"
        "    input:\n    tuple val(meta), path(counts)\n\n"
        "    output:\n    path 'out.txt', emit: out\n\n    script:\n" + script + "\n}\n"
    )
    return module


def _render_probe(module: Path, **kw):
    return render.render_task(
        "PROBE", [[{"id": "s1"}, Path("/data/s1.h5ad")]], module=str(module), modules_config=None, **kw
    )


def test_the_renderer_evaluates_a_script_block_with_groovy(tmp_path):
    module = _module(
        tmp_path,
        '    def prefix = task.ext.prefix ?: "${meta.id}"\n    """\n'
        '    cp ${counts} ${prefix}.${counts.extension} && echo ${task.cpus} > out.txt\n    """',
    )
    task = _render_probe(module, cpus=3)
    assert task.script.strip() == "cp s1.h5ad s1.h5ad && echo 3 > out.txt"
    assert task.directives["tag"] == ["s1"] and task.labels == ["process_single"]
    assert task.staged_files() == {"s1.h5ad": "/data/s1.h5ad"}


@pytest.mark.parametrize(
    ("script", "complaint"),
    [
        ('    """\n    run --x ${undefined_variable}\n    """', "undefined_variable"),
        ('    """\n    run --x ${params.no_such_param}\n    """', "params.no_such_param"),
        ('    """\n    run --x ${task.no_such_field}\n    """', "task.no_such_field"),
        ('    def x = no_such_function(1)\n    """\n    run $x\n    """', "no_such_function"),
        ("    def x = 1", "does not end with the command string"),
    ],
)
def test_the_renderer_fails_loudly_on_what_it_cannot_render(tmp_path, script, complaint):
    module = _module(tmp_path, script)
    with pytest.raises(harness.HarnessError, match=complaint.replace(".", r"\.")):
        _render_probe(module)


def test_an_unknown_param_override_is_refused():
    with pytest.raises(harness.HarnessError, match="not a parameter"):
        render.render_task("SCDEFR_QC", [[{"id": "s1"}, Path("/data/s1.h5ad")]], params={"no_such_param": 1})
