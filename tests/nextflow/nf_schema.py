"""What the nf-schema plugin does with a samplesheet and with the pipeline's params, without Nextflow.

A model of nf-schema 2.x as read from its source (nextflow-io/nf-schema, `FilesHelper`, `Types`,
`SamplesheetConverter`, `ParameterValidator`) and of the libraries it leans on:

* ``samplesheet_to_list(path, schema)`` is ``samplesheetToList``: CSV/TSV rows are split as
  Nextflow's ``splitCsv(header: true, strip: true, quote: '"')`` does, then every string goes through
  org.json's ``JSONObject.stringToValue``: ``4`` becomes the integer 4, ``2.50`` a BigDecimal,
  ``true`` a boolean and an empty cell nothing at all. The rows are validated against the schema
  (JSON Schema 2020-12 with the dev.harrel type rules: ``4.0`` is an integer, a string never is; plus
  nf-schema's ``exists``, path formats and ``uniqueEntries``), then each row becomes
  ``[meta, value, ...]``: a missing value becomes the property's default, or ``[]`` when it has none.
* ``validate_parameters(params, schema, cli_params=..., version=...)`` is ``validateParameters()``:
  under Nextflow's strict syntax parser (the default from 26.04) command-line params reach the plugin
  as strings; from nf-schema 2.7.2 on they are cast first (``true``/``false``, then integer, long,
  double) and validated as such. The params themselves stay strings: validation never writes back.

Numbers that Groovy keeps as ``BigDecimal`` are :class:`decimal.Decimal` here (same text: ``1E+3``
for ``1e3``); ``harness.call`` hands them to the Groovy runtime as BigDecimal again.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import jsonschema

# The first nf-schema release that casts command-line params before validating them (its 2.7.2
# changelog; Nextflow >= 26.04 is needed for the session's record of which params came from the CLI).
FIRST_CASTING_RELEASE = (2, 7, 2)


class JsonNull:
    """org.json's ``JSONObject.NULL``, what the cell text ``null`` turns into."""

    def __repr__(self) -> str:
        return "null"


JSON_NULL = JsonNull()


@dataclass
class SchemaError:
    """One validation error as nf-schema lists it: the entry (1-based, None for params), field, message."""

    entry: int | None
    field: str
    value: object
    message: str

    def __str__(self) -> str:
        where = f"Entry {self.entry}: " if self.entry is not None else ""
        return f"-> {where}Error for field '{self.field}' ({self.value}): {self.message}"


class SamplesheetError(ValueError):
    def __init__(self, errors: list[SchemaError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


# ---------------------------------------------------------------- type inference


def _java_int(text: str) -> int | None:
    """Integer.parseInt / Long.parseLong style: an optional sign and digits only."""
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else None


def string_to_value(text: str) -> object:
    """org.json ``JSONObject.stringToValue`` (releases 20240303 to 20260522)."""
    if text == "":
        return text
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "null":
        return JSON_NULL
    initial = text[0]
    if initial.isdigit() or initial == "-":
        try:
            return _string_to_number(text)
        except (ValueError, InvalidOperation):
            pass
    return text


def _string_to_number(text: str) -> object:
    """org.json ``stringToNumber``: decimal notation as BigDecimal, integers narrowed to int/long."""
    if not (text[0] in "0123456789" or text[0] == "-"):
        raise ValueError(text)
    if "." in text or "e" in text or "E" in text or text == "-0":
        if not re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
            raise ValueError(text)  # BigDecimal and Double.valueOf both refuse it
        number = Decimal(text)
        if text.startswith("-") and number == 0:
            return -0.0  # org.json keeps -0 as a Double
        return number
    if (text[0] == "0" and len(text) > 1 and text[1].isdigit()) or (
        text[0] == "-" and len(text) > 2 and text[1] == "0" and text[2].isdigit()
    ):
        raise ValueError(text)  # 007: not a JSON number
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(text)
    return int(text)  # Integer, Long or BigInteger: the same number to JSON Schema


def infer_type(value: object) -> object:
    """nf-schema ``Types.inferType``: strings through stringToValue, '' and anything else to null."""
    if isinstance(value, dict):
        return {key: infer_type(item) for key, item in value.items()}
    if isinstance(value, list):
        return [infer_type(item) for item in value]
    if isinstance(value, str):
        return None if value == "" else string_to_value(value)
    return None


def parse_param_value(text: str) -> object:
    """nf-schema ``Types.parseParamValue`` (Nextflow's legacy CLI casting), applied to CLI params."""
    if text.lower() == "true":
        return True
    if text.lower() == "false":
        return False
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        number = _java_int(text)
        if number is not None and -(2**31) <= number < 2**31:
            return number
        if number is not None and -(2**63) <= number < 2**63:
            return number
        return float(text)
    return text


# ---------------------------------------------------------------- samplesheets


def file_type(path: Path) -> str:
    """``FilesHelper.getFileType``: the extension, else the delimiter the header has more of."""
    extension = path.suffix.lstrip(".")
    if extension in ("csv", "tsv", "yml", "yaml", "json"):
        return "yaml" if extension == "yml" else extension
    header = path.read_text().splitlines()[0] if path.stat().st_size else ""
    return "csv" if header.count(",") > header.count("\t") else "tsv"


def _split_rows(path: Path, separator: str) -> list[dict]:
    """``splitCsv(header: true, strip: true, sep: SEP, quote: '"')`` after nf-schema's header sanitising."""
    lines = path.read_text().splitlines()
    if lines and (lines[0].endswith(",") or lines[0].endswith("\t")):
        sanitised = []
        for line in lines:
            if not line:
                break  # the sanitiser stops at the first empty line
            sanitised.append(re.sub(r"[,\t]*$", "", line))
        lines = sanitised

    def parse(line: str) -> list[str]:
        return [cell.strip() for cell in next(csv.reader([line], delimiter=separator, quotechar='"'))]

    if not lines:
        raise ValueError(f"{path}: Missing 'header' in CSV file")
    header = parse(lines[0])
    if any(not column for column in header):
        raise ValueError(f"{path}: Empty header columns are not allowed in CSV file")
    rows = []
    for line in lines[1:]:
        if not line:
            continue  # splitCsv skips empty lines
        cells = parse(line)
        rows.append({column: cells[i] if i < len(cells) else None for i, column in enumerate(header)})
    return rows


def read_samplesheet(path: Path) -> list:
    """``FilesHelper.fileToObject``: the rows with their inferred types (csv/tsv) or as parsed (json/yaml)."""
    kind = file_type(path)
    if kind == "json":
        return json.loads(path.read_text(), parse_float=Decimal)
    if kind == "yaml":
        import yaml

        return yaml.safe_load(path.read_text())
    return infer_type(_split_rows(path, "," if kind == "csv" else "\t"))


def _is_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, (float, Decimal)):
        return value == value and value not in (float("inf"), float("-inf")) and value == int(value)
    return False


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


_TYPES = (
    jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda _checker, value: _is_integer(value))
    .redefine("number", lambda _checker, value: _is_number(value))
    .redefine("null", lambda _checker, value: value is None or value is JSON_NULL)
)


def _exists(validator, wanted, value, schema):
    if wanted and isinstance(value, str) and not Path(value).exists():
        yield jsonschema.ValidationError(f"the file or directory '{value}' does not exist")


def _path_format(validator, fmt, value, schema):
    if not isinstance(value, str):
        return
    path = Path(value)
    if fmt == "file-path" and path.is_dir():
        yield jsonschema.ValidationError(f"'{value}' is not a file, but a directory")
    elif fmt == "directory-path" and path.exists() and not path.is_dir():
        yield jsonschema.ValidationError(f"'{value}' is not a directory, but a file")


def _unique_entries(validator, fields, rows, schema):
    if not isinstance(rows, list):
        return
    seen = {}
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            continue
        key = tuple(json.dumps(row.get(f), default=str) for f in fields)
        if key in seen:
            combination = ", ".join(f"{f}: {row.get(f)}" for f in fields)
            yield jsonschema.ValidationError(f"Entry {index}: Detected duplicate entries: [{combination}]")
        seen[key] = index


NfSchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"exists": _exists, "format": _path_format, "uniqueEntries": _unique_entries},
    type_checker=_TYPES,
)


def _json_ready(value: object) -> object:
    """Groovy's JsonGenerator with ``excludeNulls()``: null map values vanish before validation."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if _is_integer(value):
        return "integer"
    if _is_number(value):
        return "number"
    if value is None or value is JSON_NULL:
        return "null"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"Value is [{_type_name(error.instance)}] but should be [{', '.join(wanted)}]"
    return error.message


def _errors(instance: object, schema: dict, entry_of_path) -> list[SchemaError]:
    found = []
    for error in sorted(NfSchemaValidator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = list(error.absolute_path)
        entry, field = entry_of_path(path)
        custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
        found.append(SchemaError(entry, field, error.instance, custom or _message(error)))
    return found


def validate_samplesheet(rows: list, schema: dict) -> list[SchemaError]:
    """The errors nf-schema lists for these rows (empty: the samplesheet is valid)."""
    return _errors(
        _json_ready(rows),
        schema,
        lambda path: (path[0] + 1 if path else None, str(path[1]) if len(path) > 1 else ""),
    )


def _convert(value: object, schema: dict) -> object:
    """``SamplesheetConverter.processMeta``/``formatEntry`` for a plain value."""
    if value is None or value is JSON_NULL:
        return schema["default"] if "default" in schema else []
    if (
        isinstance(value, str)
        and schema.get("type") == "string"
        and schema.get("format")
        in (
            "file-path",
            "path",
            "directory-path",
            "file-path-pattern",
        )
    ):
        return Path(value)
    return value


def samplesheet_to_list(path: Path | str, schema_path: Path | str) -> list[list]:
    """``samplesheetToList(path, schema)``: validated rows as ``[meta, value, ...]``, or SamplesheetError."""
    schema = json.loads(Path(schema_path).read_text())
    rows = read_samplesheet(Path(path))
    errors = validate_samplesheet(rows, schema)
    if errors:
        raise SamplesheetError(errors)
    entries = []
    for row in rows:
        meta, values = {}, []
        for name, spec in schema["items"]["properties"].items():
            value = _convert(row.get(name), spec)
            if spec.get("meta"):
                for key in spec["meta"] if isinstance(spec["meta"], list) else [spec["meta"]]:
                    meta[key] = value
            else:
                values.append(value)
        entries.append([meta, *values] if meta else values)
    return entries


# ---------------------------------------------------------------- parameters


def casts_cli_params(version: tuple[int, ...], strict_parser: bool = True) -> bool:
    """Whether ``validateParameters()`` casts command-line params: 2.7.2+ under the strict parser."""
    return strict_parser and tuple(version) >= FIRST_CASTING_RELEASE


def validate_parameters(
    params: dict,
    schema: dict,
    *,
    cli_params: dict | None = None,
    version: tuple[int, ...],
    strict_parser: bool = True,
) -> tuple[list[SchemaError], list[str]]:
    """``validateParameters()``: (errors, unrecognised param names) for the config's params with the
    command-line ones on top. Under the strict parser the CLI values are strings; old parsers cast them."""
    merged = dict(params)
    for name, text in (cli_params or {}).items():
        merged[name] = (
            parse_param_value(text) if (casts_cli_params(version, strict_parser) or not strict_parser) else text
        )
    instance = _json_ready(merged)
    errors = _errors(instance, schema, lambda path: (None, str(path[0]) if path else ""))
    known = set()
    for group in [schema, *schema.get("$defs", {}).values()]:
        known |= set(group.get("properties", {}))
    return errors, sorted(set(instance) - known)
