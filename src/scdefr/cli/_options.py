"""Command-line arguments made from the option dataclasses of :mod:`scdefr.options`.

Each field becomes ``--<name-with-dashes>``; its type gives the parser (``auto``/``none`` keywords,
comma-separated lists, choices), its help line and default the help text. Parsing turns text into
the field's type; the dataclass then checks the bounds, so ``--min-genes -1`` and ``--sigma 2`` fail
the same way from the command line and from Python.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..options import AUTO, CommonOptions, Options, field_types, kind


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_option_group(parser: argparse.ArgumentParser, group: type[Options]) -> None:
    """One argument per field of ``group``, in an argument group titled by its docstring."""
    arguments = parser.add_argument_group(group.__doc__.splitlines()[0].rstrip("."))
    for item in dataclasses.fields(group):
        arguments.add_argument(flag(item.name), dest=item.name, **argument_spec(group, item))


def argument_spec(group: type[Options], item: dataclasses.Field) -> dict:
    """``add_argument`` keywords of one option: type or action, choices, metavar, default and help."""
    what, extras = kind(field_types(group)[item.name])
    default, meta = item.default, item.metadata
    described = meta["help"].replace("%", "%%")  # argparse formats help with %
    if what == "bool":
        return {"action": "store_true", "help": described}
    spec = {
        "default": default,
        "help": f"{described} (default: {_shown(default)}{'; 0: ' + meta['zero'] if meta['zero'] else ''})",
    }
    if what == "choice":
        return {**spec, "choices": extras[0]}
    if what == "tuple":
        element = extras[0]
        return {**spec, "type": _listed(element), "metavar": "A,B,..." if element is str else "N,N,..."}
    parse = {"int": int, "float": float, "str": str}[what]
    keywords = [word for word in ("auto", "none") if word in extras]
    metavar = "{" + ",".join([*keywords, "N"]) + "}" if keywords else None
    return {**spec, "type": _with_keywords(parse, keywords), "metavar": metavar}


def options_from(args: argparse.Namespace, group: type[Options]) -> Options:
    """The validated options of ``group`` from parsed arguments."""
    return group.pick(vars(args))


def common_options(args: argparse.Namespace) -> CommonOptions:
    return options_from(args, CommonOptions)


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _with_keywords(parse, keywords: list[str]):
    """A parser for a number that also takes the words in ``keywords`` (``'none'`` gives None)."""
    expected = " or ".join([*(repr(word) for word in keywords), "an integer" if parse is int else "a number"])

    def parse_value(text: str):
        if text in keywords:
            return None if text == "none" else AUTO
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    parse_value.__name__ = parse.__name__
    return parse_value


def _listed(element: type):
    """A parser for comma-separated values of ``element``."""

    def parse_list(text: str) -> tuple:
        try:
            return tuple(element(part.strip()) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {element.__name__} values, got {text!r}"
            ) from None

    return parse_list
