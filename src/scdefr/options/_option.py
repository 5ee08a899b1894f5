"""An option's declaration (:func:`option`) and its checks when an option group is built (:class:`Options`)."""

from __future__ import annotations

import dataclasses
import inspect
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
    """Base of the option groups: each value checked when a group is built, and the group as names and a dict.

    A subclass is a frozen dataclass whose fields are made by :func:`option`; its docstring gains a numpydoc
    Parameters section written from those declarations, so the help of an option is written once.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__doc__ = f"{inspect.cleandoc(cls.__doc__)}\n\n{_parameters_section(cls)}"

    def __post_init__(self):
        for item in dataclasses.fields(self):
            _check_value(self, item, getattr(self, item.name))
        self.check()

    def check(self) -> None:
        """Check what involves several fields of the group (nothing by default); each field is checked alone first.

        Raises
        ------
        ScdefrError
            A combination of values the group refuses, naming the option to change.
        """

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """List the group's option names, in their declared order.

        Returns
        -------
        tuple of str
            The field names, the same as the Python keywords (``--`` and dashes make the flags).
        """
        return tuple(item.name for item in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """Give every option of the group with its value, as ``uns`` and checkpoints store them.

        Returns
        -------
        dict of str to object
            Each option name, in declared order, with its value.
        """
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    @classmethod
    def pick(cls, values: dict[str, Any]) -> Options:
        """Build the group from the values it has a field for, ignoring the others (those of other groups).

        Parameters
        ----------
        values
            Option values by name, of this group and any other; a missing option takes its default.

        Returns
        -------
        Options
            The group, every value checked.
        """
        return cls(**{name: values[name] for name in cls.names() if name in values})

    def fail(self, name: str, message: str):
        """Stop with one line that names option ``name`` as the user knows it, then says what is wrong.

        Parameters
        ----------
        name
            The option's field name (``min_genes``): the line names it and its flag (``--min-genes``).
        message
            What is wrong with its value, e.g. ``must be >= 0, got -1``.

        Raises
        ------
        ScdefrError
            Always.
        """
        raise ScdefrError(f"{describe(name)} {message}")


def describe(name: str) -> str:
    """``min_genes`` as the user may know it: ``min_genes (--min-genes)``."""
    return f"{name} (--{name.replace('_', '-')})"


@cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolve the type annotations of an option group's fields (written as text in the source).

    Parameters
    ----------
    cls
        An option group, such as :class:`~scdefr.options.QCOptions`.

    Returns
    -------
    dict of str to type
        Each field's type, in declared order, ready for :func:`kind`.
    """
    return typing.get_type_hints(cls)


def kind(annotation) -> tuple[str, tuple]:
    """Tell how an option of this type is parsed and checked: its base kind and the words it also takes.

    Parameters
    ----------
    annotation
        A field's type from :func:`field_types`: ``bool``, ``int``, ``float``, ``str``, a ``Literal`` of
        choices or a ``tuple[...]``, optionally ``| None`` or ``| Literal['auto']``.

    Returns
    -------
    tuple of str and tuple
        ``(what, extras)``: ``what`` is ``'bool'``, ``'int'``, ``'float'``, ``'str'``, ``'choice'`` or
        ``'tuple'``; ``extras`` starts with the choices (``'choice'``) or the element type (``'tuple'``),
        followed by ``'none'`` and ``'auto'`` where ``None`` or ``'auto'`` are allowed.
    """
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


def _parameters_section(cls: type) -> str:
    """The numpydoc Parameters of a group's fields, from their declarations (before ``@dataclass`` runs)."""
    lines = ["Parameters", "----------"]
    for name, annotation in field_types(cls).items():
        declared = vars(cls)[name]
        described = _described(declared.metadata, each=kind(annotation)[0] == "tuple")
        lines += [f"{name} : {_type_text(annotation)}, default {declared.default!r}", f"    {described}"]
    return "\n".join(lines)


def _type_text(annotation) -> str:
    """A field's type as numpydoc writes it: ``int or 'auto'``, ``{'gzip', 'none'}``, ``tuple of int``."""
    what, extras = kind(annotation)
    if what == "choice":
        base, extras = "{" + ", ".join(map(repr, extras[0])) + "}", extras[1:]
    elif what == "tuple":
        base, extras = f"tuple of {extras[0].__name__}", extras[1:]
    else:
        base = what
    return " or ".join([base, *("None" if extra == "none" else repr(AUTO) for extra in extras)])


def _described(meta, *, each: bool) -> str:
    """The help line as a sentence, with the bounds (of ``each`` value of a list) and what 0 means."""
    text = f"{meta['help'][0].upper()}{meta['help'][1:]}."
    bounds = [
        f"{sign} {limit:g}"
        for limit, sign in (
            (meta["low"], ">" if meta["low_open"] else ">="),
            (meta["high"], "<" if meta["high_open"] else "<="),
        )
        if limit is not None
    ]
    if bounds:
        text += f" {'Each m' if each else 'M'}ust be {', '.join(bounds)}."
    if meta["zero"]:
        text += f" 0: {meta['zero']}."
    return text


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
