"""The pipeline's step parameters follow the one declaration of every option (scdefr.options)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

from scdefr.options import STEP_OPTIONS, CommonOptions

REPO = Path(__file__).resolve().parents[1]


def sync_tool():
    spec = importlib.util.spec_from_file_location("sync_pipeline_options", REPO / "tools" / "sync_pipeline_options.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_config_and_modules_config_are_written_from_the_options():
    """tools/sync_pipeline_options.py --check: nothing to rewrite (else run it and commit the result)."""
    assert sync_tool().main(["--check"]) == 0


def test_every_pipeline_option_is_a_param_of_its_step_and_nothing_else_is():
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    params = {name for group in schema["$defs"].values() for name in group["properties"]}
    options = {
        item.name
        for group in (*(g for groups in STEP_OPTIONS.values() for g in groups), CommonOptions)
        for item in dataclasses.fields(group)
        if item.metadata["pipeline"]
    }
    assert options <= params
    pipeline_only = {
        "input", "sample", "outdir", "publish_dir_mode", "checkpoint_dir", "skip_multiqc", "multiqc_title",
        "container_registry", "custom_config_version", "custom_config_base", "config_profile_name",
        "config_profile_description", "config_profile_contact", "config_profile_url", "help", "help_full",
        "show_hidden", "validate_params", "monochrome_logs", "trace_report_suffix",
    }  # fmt: skip
    assert params - options == pipeline_only
    modules = (REPO / "conf" / "modules.config").read_text()
    for step, groups in STEP_OPTIONS.items():
        block = modules.split(f"withName: 'SCDEFR_{step.upper()}'")[1].split("withName:")[0]
        for group in (*groups, CommonOptions):
            for item in dataclasses.fields(group):
                if item.metadata["pipeline"]:
                    assert f"'--{item.name.replace('_', '-')}'" in block, (step, item.name)


def test_the_schema_states_each_options_default_and_sets_none():
    """Unset params pass nothing, so the CLI's default applies: the schema says which it is."""
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    properties = {name: prop for group in schema["$defs"].values() for name, prop in group["properties"].items()}
    assert "default" not in properties["epochs"] and properties["epochs"]["description"].endswith("Default: auto.")
    assert properties["hidden_dims"]["description"].endswith("Default: 256,64,16.")
    assert properties["knn_method"]["enum"] == ["auto", "exact", "approx"]
    assert properties["sigma"]["minimum"] == 0 and properties["sigma"]["maximum"] == 1
    assert properties["lr"]["exclusiveMinimum"] == 0
