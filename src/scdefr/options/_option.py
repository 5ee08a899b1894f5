"""An option's declaration (:func:`option`) and its checks when an option group is built (:class:`Options`)."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import field
from functools import cache
from typing import Any, Literal

from ..errors import ScdefrError

AUTO = "auto"
Auto = Literal["auto"]

# Text a printable option may hold: one or more characters, none of them a control character.
PRINTABLE = r"[^\x00-\x1f]+"


def option(
    default,
    help: str,
    *,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    pipeline=True,
    zero=None,
    printable=False,
):
    """A dataclass field with its help line and bounds (``low``/``high``, inclusive unless ``*_open``).

    ``zero`` documents what 0 means where it is special; ``printable`` refuses text with control characters
    (tabs, newlines); ``pipeline=False`` keeps the option out of the Nextflow parameters (settings of one
    process, such as logging).
    """
    metadata = {
        "help": help,
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "pipeline": pipeline,
        "zero": zero,
        "printable": printable,
    }
    return field(default=default, metadata=metadata)


class Options:
    """Mixin: validation on construction, the flag of each field, and plain-dict conversion."""

    def __post_init__(self):
        for item in dataclasses.fields(self):
            _check_value(self, item, getattr(self, item.name))
        self.check()

    def check(self) -> None:
        """Checks that involve several fields (none by default)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(item.name for item in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    @classmethod
    def pick(cls, values: dict[str, Any]) -> Options:
        """The options named in ``values`` that belong to this group (others ignored), validated."""
        return cls(**{name: values[name] for name in cls.names() if name in values})

    def fail(self, name: str, message: str):
        raise ScdefrError(f"{describe(name)} {message}")


def describe(name: str) -> str:
    """``min_genes`` as the user may know it: ``min_genes (--min-genes)``."""
    return f"{name} (--{name.replace('_', '-')})"


@cache
def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def kind(annotation) -> tuple[str, tuple]:
    """The option's kind for parsing and checking: ('bool'|'int'|'float'|'str'|'choice'|'tuple', extras),
    plus whether ``None`` and ``'auto'`` are allowed (as extras ``'none'``/``'auto'``)."""
    extras = []
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, _UNION) else (annotation,)
    base = []
    for arg in args:
        if arg is type(None):
            extras.append("none")
        elif typing.get_origin(arg) is Literal and typing.get_args(arg) == (AUTO,) and len(args) > 1:
            extras.append("auto")
        else:
            base.append(arg)
    (main,) = base
    if typing.get_origin(main) is Literal:
        return "choice", (typing.get_args(main), *extras)
    if typing.get_origin(main) is tuple:
        return "tuple", (typing.get_args(main)[0], *extras)
    return main.__name__, tuple(extras)


_UNION = type(int | None)


def _check_value(options: Options, item: dataclasses.Field, value) -> None:
    name, meta = item.name, item.metadata
    what, extras = kind(field_types(type(options))[name])
    if value is None and "none" in extras:
        return
    if value == AUTO and "auto" in extras:
        return
    if what == "choice":
        choices = extras[0]
        if value not in choices:
            options.fail(name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return
    if what == "bool":
        if not isinstance(value, bool):
            options.fail(name, f"must be true or false, got {value!r}")
        return
    if what == "str":
        if not isinstance(value, str):
            options.fail(name, f"must be text, got {value!r}")
        if meta["printable"] and not re.fullmatch(PRINTABLE, value):
            options.fail(name, f"must be plain text without tabs, newlines or other control characters, got {value!r}")
        return
    if what == "tuple":
        element = extras[0]
        if not isinstance(value, tuple) or not all(_is(v, element) for v in value):
            options.fail(name, f"must be a list of {element.__name__} values, got {value!r}")
        for number in value if element in (int, float) else ():
            _check_bounds(options, name, meta, number)
        return
    expected = int if what == "int" else float
    if not _is(value, expected):
        alternatives = " or 'auto'" if "auto" in extras else ""
        options.fail(name, f"must be {'an integer' if expected is int else 'a number'}{alternatives}, got {value!r}")
    _check_bounds(options, name, meta, value)


def _is(value, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, expected)


def _check_bounds(options: Options, name: str, meta, value) -> None:
    low, high = meta["low"], meta["high"]
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        options.fail(name, f"must be {'>' if meta['low_open'] else '>='} {low:g}, got {value!r}")
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        options.fail(name, f"must be {'<' if meta['high_open'] else '<='} {high:g}, got {value!r}")
