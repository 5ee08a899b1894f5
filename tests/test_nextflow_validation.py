"""Parameters and samplesheets as a current Nextflow (26.04+, strict parser) and nf-schema hand them
to the pipeline: nf-schema's CSV type inference and command-line casting, as modelled in
tests/nextflow/nf_schema.py from its source, then main.nf's own checks and the rendered commands."""

from __future__ import annotations

import json
import re
import shlex
from decimal import Decimal
from pathlib import Path

import pytest
from nextflow import harness, nf_schema, render

ROOT = harness.ROOT
SAMPLESHEET_SCHEMA = ROOT / "assets/schema_input.json"
DATA = ROOT / "assets/test_data/sim_300x500.h5ad"

pytestmark = pytest.mark.skipif(harness.available() is not None, reason=str(harness.available()))


def _pinned_nf_schema() -> tuple[int, ...]:
    (plugin,) = [p for p in harness.inspect("nextflow.config")["nextflow.config"]["plugins"] if "nf-schema@" in p]
    return tuple(int(part) for part in re.search(r"nf-schema@([0-9.]+)", plugin).group(1).split("."))


def _minimum_nextflow() -> tuple[int, ...]:
    text = (ROOT / "nextflow.config").read_text()
    return tuple(int(p) for p in re.search(r"nextflowVersion\s*=\s*'!>=([0-9.]+)'", text).group(1).split("."))


def _schema() -> dict:
    return json.loads((ROOT / "nextflow_schema.json").read_text())


def _config_params() -> dict:
    return render.render_task("SCDEFR_QC", [[{"id": "s1"}, Path("/data/s1.h5ad")]]).params


# ---------------------------------------------------------------- the model itself


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", 4),
        ("-1", -1),
        ("4.0", Decimal("4.0")),
        ("1e3", Decimal("1E+3")),
        ("007", "007"),
        ("true", True),
        ("FALSE", False),
        ("auto", "auto"),
        ("1.5e", "1.5e"),
        (".5", ".5"),
        ("cell_type", "cell_type"),
    ],
)
def test_csv_cells_are_typed_as_org_json_types_them(text, value):
    assert nf_schema.string_to_value(text) == value
    assert type(nf_schema.string_to_value(text)) is type(value)


def test_the_model_reports_the_issue_s_type_error(tmp_path):
    """A string-typed column given 4 fails as nf-schema fails it: 'Value is [integer] but should be [string]'."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("sample,n\ns1,4\n")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array",
        "items": {"type": "object", "properties": {"sample": {"type": "string"}, "n": {"type": "string"}}},
    }
    (error,) = nf_schema.validate_samplesheet(nf_schema.read_samplesheet(sheet), schema)
    assert (error.entry, error.field, error.message) == (1, "n", "Value is [integer] but should be [string]")


def test_the_pinned_plugin_and_nextflow_cast_command_line_params():
    """nf-schema casts CLI params (strings under the strict parser) from 2.7.2, which needs Nextflow 26.04."""
    assert nf_schema.casts_cli_params(_pinned_nf_schema())
    assert _minimum_nextflow() >= (26, 4, 0)
    assert not nf_schema.casts_cli_params((2, 5, 1))


# ---------------------------------------------------------------- samplesheets


def test_the_example_samplesheet_passes_and_reaches_the_commands(monkeypatch):
    monkeypatch.chdir(ROOT)  # its counts paths are relative to the launch folder, the repository
    entries = nf_schema.samplesheet_to_list(ROOT / "assets/samplesheet_example.csv", SAMPLESHEET_SCHEMA)
    assert [meta["n_clusters"] for meta, _ in entries] == ["auto", 4]  # '4' arrives as an integer
    checked = harness.call_function("main.nf", "checkedSamples", entries, "assets/samplesheet_example.csv")["result"]
    assert [meta["id"] for meta, _ in checked] == ["sim_auto", "sim_k4"]
    for (meta, counts), expected in zip(checked, ["auto", "4"], strict=True):
        task = render.render_task("SCDEFR_TRAIN", [[meta, ROOT / counts]])
        assert shlex.split(task.ext["args"])[1] == expected  # --n-clusters VALUE
        export = render.render_task("SCDEFR_EXPORT", [[meta, ROOT / counts]])
        assert "--label-key 'cell_type'" in export.ext["args"]


def test_numeric_sample_names_and_empty_optional_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.h5ad").write_bytes(b"")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("sample,counts,label_key,n_clusters\n1,c.h5ad,,\n2.0,c.h5ad,7,3\n007,c.h5ad,cell type,auto\n")
    entries = nf_schema.samplesheet_to_list(sheet, SAMPLESHEET_SCHEMA)
    assert [meta["id"] for meta, _ in entries] == [1, Decimal("2.0"), "007"]
    assert entries[0][0]["label_key"] == [] and entries[0][0]["n_clusters"] == []  # nf-schema's value for a missing one
    checked = harness.call_function("main.nf", "checkedSamples", entries, "sheet.csv")["result"]
    assert [meta["id"] for meta, _ in checked] == ["1", "2.0", "007"]
    assert checked[0][0] == {"id": "1"}  # empty columns dropped: the params apply
    train = render.render_task("SCDEFR_TRAIN", [[entries[0][0], tmp_path / "c.h5ad"]])
    assert (
        "--n-clusters" not in train.ext["args"] and "[]" not in train.ext["args"]
    )  # [] falls back to --n_clusters, unset
    export = render.render_task("SCDEFR_EXPORT", [[entries[1][0], tmp_path / "c.h5ad"]])
    assert "--label-key '7'" in export.ext["args"] and "[]" not in export.ext["args"]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("s 1,c.h5ad,,", "sample"),  # a space
        ("-1,c.h5ad,,", "sample"),  # a negative number
        ("2.5,c.h5ad,,", "sample"),  # not a whole number: nf-schema would rename 2.50 and 1E-3
        ("s1,c.h5ad,,0", "n_clusters"),
        ("s1,c.h5ad,,many", "n_clusters"),
        ("s1,missing.h5ad,,", "counts"),
        ("s1,c.h5ad,true,", "label_key"),  # read as a boolean
    ],
)
def test_bad_rows_are_refused_with_the_field_named(tmp_path, monkeypatch, row, field):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.h5ad").write_bytes(b"")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"sample,counts,label_key,n_clusters\n{row}\n")
    with pytest.raises(nf_schema.SamplesheetError) as refused:
        nf_schema.samplesheet_to_list(sheet, SAMPLESHEET_SCHEMA)
    assert {e.field for e in refused.value.errors} == {field}


def test_a_number_read_in_exponent_form_is_refused_by_main_nf(tmp_path, monkeypatch):
    """1e3 passes the schema as the integer 1E+3 but would name the sample '1E+3': main.nf stops."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.h5ad").write_bytes(b"")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("sample,counts\n1e3,c.h5ad\n")
    entries = nf_schema.samplesheet_to_list(sheet, SAMPLESHEET_SCHEMA)
    assert "error" in harness.call_function("main.nf", "checkedSamples", entries, "sheet.csv")


def test_duplicate_samples_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.h5ad").write_bytes(b"")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("sample,counts\ns1,c.h5ad\ns1,c.h5ad\n")
    with pytest.raises(nf_schema.SamplesheetError, match="duplicate"):
        nf_schema.samplesheet_to_list(sheet, SAMPLESHEET_SCHEMA)


# ---------------------------------------------------------------- command-line params


CLI = {  # what a user types, as the strict parser hands it over: strings
    "input": "assets/samplesheet_example.csv",
    "outdir": "results",
    "seed": "1",
    "skip_multiqc": "true",
    "n_clusters": "4",
    "epochs": "30",
    "max_pct_mito": "15.5",
    "transpose": "false",
    "label_key": "cell_type",
    "sample": "1",
    "multiqc_title": "2026",
    "checkpoint_every": "5",
    "validate_params": "false",
}


def test_command_line_params_pass_validation_with_the_pinned_plugin(monkeypatch):
    monkeypatch.chdir(ROOT)
    errors, unrecognised = nf_schema.validate_parameters(
        _config_params(), _schema(), cli_params=CLI, version=_pinned_nf_schema()
    )
    assert errors == [] and unrecognised == []


def test_command_line_params_fail_without_casting(monkeypatch):
    """What nf-schema 2.5.1 did under the strict parser (the issue): typed params refused."""
    monkeypatch.chdir(ROOT)
    errors, _ = nf_schema.validate_parameters(_config_params(), _schema(), cli_params=CLI, version=(2, 5, 1))
    assert {"seed", "skip_multiqc", "max_pct_mito", "transpose", "checkpoint_every"} <= {e.field for e in errors}


def test_bad_command_line_values_are_still_refused(monkeypatch):
    monkeypatch.chdir(ROOT)
    for name, value in {
        "seed": "one",
        "n_clusters": "0",
        "label_key": "a\tb",
        "publish_dir_mode": "hardlink",
        "sample": "my sample",
    }.items():
        errors, _ = nf_schema.validate_parameters(
            _config_params(), _schema(), cli_params={**CLI, name: value}, version=_pinned_nf_schema()
        )
        assert [e.field for e in errors] == [name], (name, errors)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("False", False),
        ("TRUE", True),
        (None, False),
    ],
)
def test_boolean_params_from_the_command_line_are_not_truthy_strings(value, expected):
    """With validation off, --skip_multiqc false stays the string 'false': main.nf reads it as false."""
    assert harness.call_function("main.nf", "isTrue", value)["result"] is expected
    qc = render.render_task("SCDEFR_QC", [[{"id": "s1"}, Path("/data/s1.h5ad")]], params={"transpose": value})
    assert ("--transpose" in shlex.split(qc.ext["args"])) is expected


def test_every_boolean_param_in_main_nf_goes_through_istrue():
    booleans = {
        name
        for group in _schema()["$defs"].values()
        for name, spec in group["properties"].items()
        if spec.get("type") == "boolean"
    }
    source = (ROOT / "main.nf").read_text()
    used = set(re.findall(r"params\.(\w+)", source)) & booleans
    assert used == {"validate_params", "skip_multiqc"}
    for name in used:
        assert all(
            re.search(rf"isTrue\(params\.{name}\)", line) for line in source.splitlines() if f"params.{name}" in line
        )
    config = (ROOT / "nextflow.config").read_text()
    assert "monochromeLogs = params.monochrome_logs?.toString()?.toLowerCase() == 'true'" in config


def test_the_institutional_config_is_loaded_online_skipped_offline_and_read_from_a_local_copy(tmp_path):
    online = harness.call("config", {"configs": ["nextflow.config"], "project_dir": str(ROOT), "env": {}})
    assert online["skipped_includes"] == [
        "https://raw.githubusercontent.com/nf-core/configs/master/nfcore_custom.config"
    ]
    offline = harness.call(
        "config", {"configs": ["nextflow.config"], "project_dir": str(ROOT), "env": {"NXF_OFFLINE": "true"}}
    )
    assert offline["skipped_includes"] == []  # /dev/null: nothing to fetch
    local = tmp_path / "configs"
    local.mkdir()
    (local / "nfcore_custom.config").write_text("params { config_profile_name = 'my cluster' }\n")
    read = harness.call(
        "config",
        {
            "configs": ["nextflow.config"],
            "project_dir": str(ROOT),
            "env": {"NXF_OFFLINE": "true"},
            "params": {"custom_config_base": str(local)},
        },
    )
    assert read["config"]["params"]["config_profile_name"] == "my cluster"
