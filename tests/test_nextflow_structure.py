"""nf-core conventions of the pipeline, read from the code with reftrace and the Groovy harness:
directives of every process, includes, the GPU switch, params declared in nextflow.config and
nextflow_schema.json (and equal to the CLI's defaults), the output layout, module metadata."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import reftrace
import yaml
from nextflow import harness, render

ROOT = harness.ROOT
SCHEMAS = harness.SHARED / "nf-core-schemas"
STANDARD_LABELS = {
    "process_single",
    "process_low",
    "process_medium",
    "process_high",
    "process_long",
    "process_high_memory",
}
STEPS = {"qc": "SCDEFR_QC", "graph": "SCDEFR_GRAPH", "train": "SCDEFR_TRAIN", "export": "SCDEFR_EXPORT"}
STEP_INPUT = {"qc": "s1.h5ad", "graph": "s1.qc.h5ad", "train": "s1.graph.h5ad", "export": "s1.trained.h5ad"}
NF_FILES = sorted(
    str(p.relative_to(ROOT))
    for pattern in ("*.nf", "workflows/**/*.nf", "subworkflows/**/*.nf", "modules/**/*.nf")
    for p in ROOT.glob(pattern)
)
CONFIG_FILES = sorted(str(p.relative_to(ROOT)) for p in [ROOT / "nextflow.config", *ROOT.glob("conf/*.config")])
MODULE_DIRS = sorted(p.parent for p in ROOT.glob("modules/local/**/main.nf"))

pytestmark = pytest.mark.skipif(harness.available() is not None, reason=str(harness.available()))


@pytest.fixture(scope="module")
def code():
    return harness.inspect(*NF_FILES, *CONFIG_FILES)


@pytest.fixture(scope="module")
def processes(code):
    found = {}
    for path in NF_FILES:
        for process in code[path]["processes"]:
            assert process["name"] not in found, f"process {process['name']} defined twice"
            found[process["name"]] = {**process, "file": path}
    return found


@pytest.fixture(scope="module")
def schema():
    return json.loads((ROOT / "nextflow_schema.json").read_text())


def _render(process, meta=None, **kw):
    step = next((s for s, name in STEPS.items() if name == process), None)
    inputs = [[meta or {"id": "s1"}, Path("/data") / STEP_INPUT[step]]] if step else None
    return render.render_task(process, inputs, **kw)


def test_every_process_has_the_nf_core_directives(processes):
    assert set(processes) == {*STEPS.values(), "MULTIQC"}
    for name, process in processes.items():
        module = reftrace.Module.from_file(str(ROOT / process["file"]))
        assert not isinstance(module, reftrace.ParseError), module
        (parsed,) = [p for p in module.processes if p.name == name]
        assert parsed.tags, f"{name}: no tag"
        assert {label.value for label in parsed.labels} & STANDARD_LABELS, f"{name}: no standard label"
        assert parsed.containers, f"{name}: no container"
        assert (
            parsed.condas
            and "environment.yml"
            in process["directives"][[d["name"] for d in process["directives"]].index("conda")]["source"]
        )
        assert {"input", "output", "when", "script", "stub"} <= set(process["sections"]), (
            f"{name}: {set(process['sections'])}"
        )


def test_every_process_reports_versions_as_nf_core_topics(processes):
    for name in processes:
        task = (
            _render(name)
            if name != "MULTIQC"
            else render.render_task(name, [[Path("/data/a_mqc.tsv")], Path("/data/multiqc_config.yml")])
        )
        versions = [o for o in task.outputs if (o.emit or "").startswith("versions_")]
        assert versions, f"{name}: no versions_* output"
        for output in versions:
            kinds = [e["kind"] for e in output.elements]
            assert kinds == ["val", "val", "eval"], f"{name}: {output.emit} is {kinds}"
            assert output.elements[0]["value"] == task.qualified_name
            assert output.emit == f"versions_{output.elements[1]['value']}"
            # MultiQC reads the topic, so it must not write to it (the run would never end)
            assert output.topic == (None if name == "MULTIQC" else "versions")


def test_includes_resolve_to_the_processes_and_workflows_they_name(code):
    result = reftrace.parse_modules(str(ROOT))
    assert not result.errors
    unresolved = [i.to_dict() for i in result.unresolved_includes]
    assert all(include.startswith("plugin/nf-schema") for u in unresolved for include in u["includes"]), unresolved
    defined = {
        path: {p["name"] for p in code[path]["processes"]} | {w["name"] for w in code[path]["workflows"]}
        for path in NF_FILES
    }
    checked = 0
    for path in NF_FILES:
        for include in code[path]["includes"]:
            if include["from"].startswith("plugin/"):
                continue
            target = (ROOT / path).parent / include["from"]
            target = target.with_suffix(".nf") if target.with_suffix(".nf").is_file() else target / "main.nf"
            target = str(target.resolve().relative_to(ROOT))
            assert target in defined, f"{path}: include from {include['from']} does not resolve"
            for item in include["items"]:
                assert item["name"] in defined[target], f"{path}: {item['name']} is not defined in {target}"
                checked += 1
    assert checked >= 7


def test_training_runs_on_the_gpu_only_when_the_task_has_an_accelerator():
    cpu = _render("SCDEFR_TRAIN")
    gpu = _render("SCDEFR_TRAIN", accelerator=1)
    assert "process_gpu" in cpu.labels and set(cpu.labels) & STANDARD_LABELS
    assert cpu.container == "scdefr/train:0.2.0" and gpu.container == "scdefr/train-cuda:0.2.0"
    assert "--device cpu" in cpu.script and "--device cuda" in gpu.script
    for other in ("SCDEFR_QC", "SCDEFR_GRAPH", "SCDEFR_EXPORT"):
        assert "process_gpu" not in _render(other).labels


def test_gpu_profile_gives_the_training_step_a_gpu_in_every_container_engine(code):
    config = code["nextflow.config"]
    (gpu,) = [s for s in config["selectors"] if s["profile"] == "gpu"]
    assert (gpu["kind"], gpu["selector"]) == ("withLabel", "process_gpu")
    for expected in ("accelerator      = 1", "'--gpus all'", "'--nv'", "'singularity', 'apptainer'"):
        assert expected in gpu["source"]
    base = {(s["kind"], s["selector"]) for s in code["conf/base.config"]["selectors"]}
    assert {("withLabel", label) for label in STANDARD_LABELS | {"process_gpu"}} <= base
    assert (
        "accelerator"
        not in next(s for s in code["conf/base.config"]["selectors"] if s["selector"] == "process_gpu")["source"]
    )


def test_profiles_and_included_configs(code):
    config = code["nextflow.config"]
    wanted = {
        "docker",
        "podman",
        "singularity",
        "apptainer",
        "conda",
        "gpu",
        "test",
        "test_full",
        "slurm",
        "awsbatch",
        "google",
    }
    assert wanted <= set(config["profiles"])
    literal = [i for i in config["include_config"] if re.fullmatch(r"'[^']*'", i["source"])]
    assert len(literal) >= 6  # base.config and the profiles' configs; the institutional one is a URL
    for include in literal:
        assert (ROOT / include["source"].strip("'")).is_file(), include
    assert any("nf-schema@" in plugin for plugin in config["plugins"])
    assert config["assignments"]["process.shell"] == "[" + ", ".join(f"'{a}'" for a in render.SHELL) + "]"
    for report in ("timeline", "report", "trace", "dag"):
        assert {"scope": report, "profile": None} in config["scopes"]
    assert "resourceLimits" in (ROOT / "conf/base.config").read_text()
    for executor, words in {
        "slurm": ["--gres=gpu:1"],
        "awsbatch": ["awsbatch"],
        "google_batch": ["google-batch", "nvidia-l4"],
    }.items():
        text = (ROOT / f"conf/{executor}.config").read_text()
        assert all(word in text for word in words), executor


def _schema_properties(schema):
    properties = {}
    for group in schema["$defs"].values():
        properties.update(group["properties"])
    return properties


def test_params_used_are_declared_in_nextflow_config_and_the_schema(code, schema):
    declared = set(code["nextflow.config"]["params"])
    used = set()
    for path in NF_FILES:
        used |= set(code[path]["params_used"])
        module = reftrace.Module.from_file(str(ROOT / path))
        used |= {param.name for param in module.params}
    for path in CONFIG_FILES:
        used |= set(code[path]["params_used"])
        used |= set(code[path]["params"])  # profiles may only set declared params
    assert used - declared == set(), "params used or set but not declared in nextflow.config"
    assert set(_schema_properties(schema)) == declared
    assert {ref["$ref"].split("/")[-1] for ref in schema["allOf"]} == set(schema["$defs"])
    for name, group in schema["$defs"].items():
        assert group.get("description") and all(p.get("description") for p in group["properties"].values()), name


def test_schema_defaults_equal_the_config_defaults(schema):
    params = _render("SCDEFR_QC").params
    for name, spec in _schema_properties(schema).items():
        if name == "trace_report_suffix":  # the start time, set when the run starts
            continue
        if params[name] is None:
            assert "default" not in spec, name
        else:
            assert spec.get("default") == params[name], name
    jsonschema.Draft202012Validator.check_schema(schema)
    given = {k: v for k, v in params.items() if v is not None and k != "help"} | {"input": "in.csv", "outdir": "out"}
    jsonschema.Draft202012Validator(schema).validate(given)


@pytest.mark.parametrize("name", ["n_clusters", "pretrain_epochs", "epochs", "batch_size"])
def test_auto_or_number_params_accept_a_number_from_the_command_line(schema, name):
    """Nextflow reads `--epochs 30` as the integer 30: the schema must take it as well as 'auto'."""
    validator = jsonschema.Draft202012Validator(_schema_properties(schema)[name])
    for good in ("auto", "30", 30):
        validator.validate(good)
    for bad in ("many", -1, 2.5):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(bad)


def _command_line(task, step):
    """The `scdefr_<step>.py ...` command of a rendered script, as scdefr's own parser sees it."""
    words = shlex.split(task.script.replace("\\\n", " "))
    start = words.index(f"scdefr_{step}.py")
    return [step, *words[start + 1 :]]


@pytest.mark.parametrize("step", STEPS)
def test_step_options_and_defaults_are_the_cli_ones(step):
    cli = pytest.importorskip("scdefr.cli")
    if not (ROOT / f"src/scdefr/cli/{step}.py").exists():
        pytest.skip(f"scdefr {step} is not written yet")
    parser = cli.build_parser()
    task = _render(STEPS[step], cpus=3)
    args = parser.parse_args(_command_line(task, step))
    assert args.threads == 3
    defaults = parser.parse_args([step, *_required_io(step)])
    for option in shlex.split(task.ext["args"]):
        if option.startswith("--") and option not in ("--seed",):
            dest = option[2:].replace("-", "_")
            assert getattr(args, dest) == getattr(defaults, dest), (
                f"{step} {option}: config default differs from the CLI's"
            )


def _required_io(step):
    return {
        "qc": ["--input", "x", "--output", "y"],
        "graph": ["--input", "x", "--output", "y"],
        "train": ["--input", "x", "--output", "y"],
        "export": ["--input", "x", "--outdir", "y"],
    }[step]


def test_publish_layout_is_the_one_of_scdefr_run(code, processes):
    selectors = {s["selector"] for s in code["conf/modules.config"]["selectors"]}
    assert selectors == set(processes)
    for step, process in STEPS.items():
        task = _render(process, params={"outdir": "/results"})
        assert task.publish_dir == [{"path": f"/results/s1/{step}", "mode": "copy"}]
        assert task.ext.get("prefix") is None  # files are named after meta.id, as `scdefr run --sample` names them
        assert all(Path(p).name.startswith("s1") for output in task.outputs for p in output.paths)
    multiqc = render.render_task("MULTIQC", [[Path("/d/a_mqc.tsv")], Path("/d/c.yml")], params={"outdir": "/results"})
    assert multiqc.publish_dir == [{"path": "/results/multiqc", "mode": "copy"}]


def _options(task) -> dict:
    """ext.args as the shell hands them over: {option: value, flag: True}."""
    words, options = shlex.split(task.ext["args"]), {}
    for index, word in enumerate(words):
        if word.startswith("--"):
            following = words[index + 1] if index + 1 < len(words) else "--"
            options[word] = True if following.startswith("--") else following
    return options


def test_samplesheet_columns_override_the_params_per_sample():
    assert "--n-clusters" not in _options(_render("SCDEFR_TRAIN"))  # unset: the CLI's default (auto)
    assert _options(_render("SCDEFR_TRAIN", meta={"id": "s1", "n_clusters": "7"}))["--n-clusters"] == "7"
    assert _options(_render("SCDEFR_TRAIN", params={"n_clusters": "5"}))["--n-clusters"] == "5"
    assert "--label-key" not in _options(_render("SCDEFR_EXPORT"))
    assert _options(_render("SCDEFR_EXPORT", meta={"id": "s1", "label_key": "cell_type"}))["--label-key"] == "cell_type"
    prefixed = _options(_render("SCDEFR_QC", meta={"id": "s1"}, params={"max_counts": 5000, "transpose": True}))
    assert prefixed["--max-counts"] == "5000" and prefixed["--transpose"] is True


@pytest.mark.skipif(not SCHEMAS.is_dir(), reason=f"{SCHEMAS} absent")
@pytest.mark.parametrize("module", MODULE_DIRS, ids=lambda p: str(p.relative_to(ROOT / "modules/local")))
def test_module_metadata_follows_the_nf_core_schemas(module, processes):
    meta = yaml.safe_load((module / "meta.yml").read_text())
    environment = yaml.safe_load((module / "environment.yml").read_text())
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "meta-schema.json").read_text())).validate(meta)
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "environment-schema.json").read_text())).validate(environment)
    (process,) = [p for p in processes.values() if (ROOT / p["file"]).parent == module]
    assert meta["name"] == process["name"].lower()
    emits = {line.rsplit("emit:", 1)[1].split(",")[0].strip() for line in process["sections"]["output"]}
    assert set(meta["output"]) == emits
    declared_inputs = [re.findall(r"(?:val|path)\s*\(?\s*(\w+)", line) for line in process["sections"]["input"]]
    documented_inputs = [
        [next(iter(e)) for e in (item if isinstance(item, list) else [item])] for item in meta["input"]
    ]
    assert documented_inputs == declared_inputs
    assert (module / "tests" / "main.nf.test").is_file()


def test_subworkflow_interface_is_documented(code):
    (workflow,) = code["subworkflows/local/scdefr/main.nf"]["workflows"]
    meta = yaml.safe_load((ROOT / "subworkflows/local/scdefr/meta.yml").read_text())
    assert [next(iter(item)) for item in meta["output"]] == workflow["emit"]
    assert [next(iter(item)) for item in meta["input"]] == [t.split("//")[0].strip() for t in workflow["take"]]
    usage = (ROOT / "docs/usage.md").read_text()
    assert "include { SCDEFR } from './subworkflows/local/scdefr/main'" in usage
    assert all(f"`{emit}`" in usage for emit in workflow["emit"])
    assert (ROOT / "subworkflows/local/scdefr/tests/main.nf.test").is_file() and (
        ROOT / "tests/default.nf.test"
    ).is_file()


def _rows(path):
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def test_samplesheets_follow_the_input_schema(tmp_path):
    schema = json.loads((ROOT / "assets/schema_input.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    rows = _rows(ROOT / "assets/samplesheet_example.csv")
    validator.validate(rows)
    assert all((ROOT / row["counts"]).exists() for row in rows)
    assert len({row["sample"] for row in rows}) == len(rows)
    for bad in (
        {"sample": "has space", "counts": "a.h5ad"},
        {"sample": "s", "counts": "a.h5ad", "n_clusters": "0"},
        {"sample": "s"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate([bad])


def test_test_profile_data_comes_from_scdefr_simulate():
    simulate = pytest.importorskip("scdefr.simulate")
    anndata = pytest.importorskip("anndata")
    committed = anndata.read_h5ad(ROOT / "assets/test_data/sim_300x500.h5ad")
    fresh = simulate.simulate_counts(n_cells=300, n_genes=500, n_clusters=4, seed=1)
    assert committed.shape == fresh.shape == (300, 500)
    assert (committed.X != fresh.X).nnz == 0
    assert list(committed.obs["cell_type"]) == list(fresh.obs["cell_type"])
    params = _render("SCDEFR_QC", profile_configs=("conf/test.config",)).params
    assert params["input"] == str(ROOT / "assets/test_data/sim_300x500.h5ad")


def _documented_runs() -> list[str]:
    """Every `nextflow run .` command in README.md and docs/usage.md, continuation lines joined."""
    commands = []
    for doc in ("README.md", "docs/usage.md"):
        text = (ROOT / doc).read_text().replace("\\\n", " ")
        commands += [line.split("#")[0] for line in text.splitlines() if line.strip().startswith("nextflow run .")]
    return commands


def test_documented_nextflow_commands_use_real_profiles_and_params(code):
    commands = _documented_runs()
    assert len(commands) >= 15
    profiles = set(code["nextflow.config"]["profiles"])
    declared = set(code["nextflow.config"]["params"])
    for command in commands:
        words = shlex.split(command.replace("$USER", "user"))
        for index, word in enumerate(words):
            if word == "-profile":
                assert set(words[index + 1].split(",")) <= profiles, command
            elif word.startswith("--"):
                assert word[2:] in declared, f"{word} is not a parameter: {command}"
