"""Write the pipeline's parameters of the step options from their one declaration, scdefr.options.

Every option field with ``pipeline=True`` becomes a Nextflow parameter of the same name:
- nextflow_schema.json: its type, choices, bounds and help (the CLI's default stated in the
  description; the parameter itself has none),
- nextflow.config: ``<name> = null``, so a step gets the option only when a user sets it and the
  command line's default (or a ``--preset``'s value) applies otherwise,
- conf/modules.config: each step's ``ext.args`` passes it as ``--<name-with-dashes> 'value'``.

    python tools/sync_pipeline_options.py           # rewrite the three files
    python tools/sync_pipeline_options.py --check   # exit 1 and list the files that differ (the tests run this)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from scdefr.options import PRINTABLE, STEP_OPTIONS, CommonOptions, Options, field_types, kind

REPO = Path(__file__).resolve().parents[1]
SCHEMA, CONFIG, MODULES = REPO / "nextflow_schema.json", REPO / "nextflow.config", REPO / "conf" / "modules.config"

# Schema group of each step's options, with its title, icon and description.
GROUPS = {
    "general": ("general_options", "General", "fas fa-sliders-h", "Options every step takes."),
    "qc": (
        "qc_options",
        "Quality control",
        "fas fa-filter",
        "Cell and gene filters and highly variable genes (scdefr qc).",
    ),
    "graph": ("graph_options", "Cell graph", "fas fa-project-diagram", "PCA and the kNN cell graph (scdefr graph)."),
    "train": (
        "training_options",
        "Training",
        "fas fa-brain",
        "The scDEFR network, its training and its clusters (scdefr train).",
    ),
    "export": (
        "export_options",
        "Export",
        "fas fa-file-export",
        "Tables, plots, metrics and MultiQC content (scdefr export).",
    ),
}
# Parameters of a step that are no package option, kept as they stand in the schema.
PIPELINE_ONLY = {"train": {"--checkpoint-dir": "params.checkpoint_dir"}}
# Options a samplesheet column may set per sample.
PER_SAMPLE = {"n_clusters", "label_key"}
PROCESSES = {"qc": "SCDEFR_QC", "graph": "SCDEFR_GRAPH", "train": "SCDEFR_TRAIN", "export": "SCDEFR_EXPORT"}
BEGIN, END = "    // Step options (tools/sync_pipeline_options.py", "    // End of the step options"


def pipeline_fields(group: type[Options]) -> list[dataclasses.Field]:
    return [item for item in dataclasses.fields(group) if item.metadata["pipeline"]]


def step_fields() -> dict[str, list[tuple[type[Options], dataclasses.Field]]]:
    """The pipeline options of each schema group: the common ones, then each step's."""
    steps = {"general": [(CommonOptions, item) for item in pipeline_fields(CommonOptions)]}
    for step, groups in STEP_OPTIONS.items():
        steps[step] = [(group, item) for group in groups for item in pipeline_fields(group)]
    return steps


def schema_property(group: type[Options], item: dataclasses.Field) -> dict:
    """The JSON-schema property of one option: type, choices, bounds, and the help with its default."""
    what, extras = kind(field_types(group)[item.name])
    meta, default = item.metadata, item.default
    zero = f" 0: {meta['zero']}." if meta["zero"] else ""
    description = f"{meta['help'][0].upper()}{meta['help'][1:]}.{zero} Default: {shown_default(default)}."
    prop: dict = {"description": description}
    if what == "bool":
        prop["type"] = "boolean"
    elif what == "choice":
        prop.update(type="string", enum=list(extras[0]))
    elif what == "tuple":
        number = "[1-9][0-9]*" if meta["low"] == 1 else "[0-9]+"
        prop.update(type="string", pattern=r"^[^,\s]+(,[^,\s]+)*$" if extras[0] is str else f"^{number}(,{number})+$")
    elif "auto" in extras:
        number = "[1-9][0-9]*" if meta["low"] == 1 else "[0-9]+"
        prop.update(type=["string", "integer"], pattern=f"^(auto|{number})$")
    else:
        prop["type"] = {"int": "integer", "float": "number", "str": "string"}[what]
    if meta["printable"]:
        prop["pattern"] = f"^{PRINTABLE}$"
    if what in ("int", "float"):
        for bound, key, open_key in ((meta["low"], "minimum", "low_open"), (meta["high"], "maximum", "high_open")):
            if bound is not None:
                prop["exclusive" + key.capitalize() if meta[open_key] else key] = bound
    return {"type": prop.pop("type"), **prop}


def shown_default(value) -> str:
    """A default as the command line spells it: 256,64,16, none, false."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if value is None or isinstance(value, bool):
        return "none" if value is None else str(value).lower()
    return str(value)


def schema_text(current: str) -> str:
    schema = json.loads(current)
    definitions = schema["$defs"]
    for step, fields in step_fields().items():
        name, title, icon, description = GROUPS[step]
        kept = {
            key: value
            for key, value in definitions.get(name, {}).get("properties", {}).items()
            if key in {flag[2:].replace("-", "_") for flag in PIPELINE_ONLY.get(step, {})}
        }
        properties = {item.name: schema_property(group, item) for group, item in fields}
        definitions[name] = {
            "title": title,
            "type": "object",
            "fa_icon": icon,
            "description": description,
            "properties": {**properties, **kept},
        }
    order = ["input_output_options", *(GROUPS[step][0] for step in GROUPS)]
    rest = [key for key in definitions if key not in order]
    schema["$defs"] = {key: definitions[key] for key in order + rest}
    schema["allOf"] = [{"$ref": f"#/$defs/{key}"} for key in schema["$defs"]]
    return json.dumps(schema, indent=4) + "\n"


def config_text(current: str) -> str:
    """nextflow.config with the step options' block (between its markers) written anew."""
    lines = [f"{BEGIN}: every step option, unset; a step then takes the CLI's default)"]
    for step, fields in step_fields().items():
        lines.append(f"    // {GROUPS[step][1]}")
        lines += [f"    {item.name:<26} = null" for _, item in fields]
    lines.append(END)
    start, stop = current.index(BEGIN), current.index(END) + len(END)
    return current[:start] + "\n".join(lines) + current[stop:]


def value_expression(group: type[Options], item: dataclasses.Field) -> str:
    what, _ = kind(field_types(group)[item.name])
    if what == "bool":  # the strict parser leaves --x false a string: compare as text
        return f"params.{item.name}?.toString()?.toLowerCase() == 'true'"
    return f"meta.{item.name} ?: params.{item.name}" if item.name in PER_SAMPLE else f"params.{item.name}"


def modules_text() -> str:
    common = step_fields()["general"]
    blocks = []
    for step, process in PROCESSES.items():
        entries = {
            "--" + item.name.replace("_", "-"): value_expression(group, item)
            for group, item in [*step_fields()[step], *common]
        }
        entries.update(PIPELINE_ONLY.get(step, {}))
        width = max(len(flag) for flag in entries) + 2
        body = "\n".join(
            f"            {repr(flag).replace(chr(34), chr(39)):<{width}}: {value}," for flag, value in entries.items()
        )
        blocks.append(MODULE_BLOCK % {"process": process, "entries": body, "folder": step})
    return MODULES_HEADER + "\n".join(blocks) + MULTIQC_BLOCK


MODULES_HEADER = """/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    Options of each step (ext.args) and where its files are published (publishDir)
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    Written by tools/sync_pipeline_options.py from scdefr.options; edit those, not this file.
    ext.args   = command-line options of `scdefr <step>`, one per param of the same name:
                 '--option': value, rendered as --option 'value' (every value quoted for the
                 shell), a flag when the value is true, left out when it is null or false, so an
                 unset param (the default) or a host pipeline without our params gets the CLI's
                 default. Boolean params are compared as text: the strict parser leaves --x false
                 a string. (--checkpoint-dir is bin/scdefr_train.py's own: where a retried
                 attempt finds the last checkpoint)
    ext.prefix = file-name prefix (default: meta.id)
    Output layout, as `scdefr run` writes it: <outdir>/<sample>/{qc,graph,train,export}/
    Per-sample samplesheet columns (label_key, n_clusters) override the params.
----------------------------------------------------------------------------------------
*/

process {
"""
MODULE_BLOCK = """    withName: '%(process)s' {
        ext.args   = { [
%(entries)s
        ].findResults { option, value ->
            value == null || value == false ? null : value == true ? option : "${option} '${value.toString().replace("'", "'\\\\''")}'"
        }.join(' ') }
        publishDir = [
            path: { "${params.outdir}/${meta.id}/%(folder)s" },
            mode: params.publish_dir_mode,
        ]
    }
"""
MULTIQC_BLOCK = """
    withName: 'MULTIQC' {
        ext.args   = { [
            '--title': params.multiqc_title,
        ].findResults { option, value ->
            value == null || value == false ? null : value == true ? option : "${option} '${value.toString().replace("'", "'\\\\''")}'"
        }.join(' ') }
        publishDir = [
            path: { "${params.outdir}/multiqc" },
            mode: params.publish_dir_mode,
        ]
    }
}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report the files that are out of date")
    args = parser.parse_args(argv)
    wanted = {
        SCHEMA: schema_text(SCHEMA.read_text()),
        CONFIG: config_text(CONFIG.read_text()),
        MODULES: modules_text(),
    }
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(REPO)} is out of date: run python tools/sync_pipeline_options.py", file=sys.stderr
            )
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
