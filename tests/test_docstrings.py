"""numpydoc on the public API: every name in the ``__all__`` of the public modules (functions, classes and their
public methods) has a docstring whose Parameters match its signature and a Returns section when it returns a value."""

from __future__ import annotations

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip(
    "numpydoc.validate", reason="numpydoc is not installed (make setup installs it)"
)

PUBLIC_MODULES = (
    "scdefr.io",
    "scdefr.pp",
    "scdefr.tl",
    "scdefr.pl",
    "scdefr.export",
    "scdefr.metrics",
    "scdefr.clustering",
    "scdefr.readout",
    "scdefr.model",
    "scdefr.simulate",
    "scdefr.options",
)
# GL08: no docstring; PR01: a parameter not documented; PR02: an unknown parameter documented;
# RT01: no Returns section in a function that returns a value (numpydoc skips those returning only None).
CHECKS = ("GL08", "PR01", "PR02", "RT01")


def _defined_in(obj) -> str:
    return getattr(inspect.unwrap(getattr(obj, "fget", obj)), "__module__", "") or ""


def _public_methods(cls: type):
    """(qualified name, object) of each public method and property a class of this package defines or inherits."""
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next(klass for klass in cls.__mro__ if name in vars(klass))
        member = vars(owner)[name]
        if isinstance(member, (classmethod, staticmethod)):
            member = member.__func__
        if (inspect.isfunction(member) or isinstance(member, property)) and _defined_in(member).startswith("scdefr"):
            yield f"{owner.__module__}.{owner.__qualname__}.{name}", member


def public_api() -> dict[str, object]:
    """Every public function, class and method, by the name numpydoc loads it under (each object once)."""
    found: dict[str, object] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # constants
            found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
            if inspect.isclass(obj):
                for qualified, member in _public_methods(obj):
                    found.setdefault(qualified, member)
    return found


def offences(api: dict[str, object]) -> dict[str, list[str]]:
    """The errors of CHECKS in each docstring, for the names that have any."""
    found = {}
    for name, obj in api.items():
        # A function is judged as itself: looked up by name, a classmethod is a bound method, which numpydoc
        # does not check for RT01.
        target = numpydoc_validate.get_doc_object(obj) if inspect.isfunction(obj) else name
        errors = [
            f"{code} {message}" for code, message in numpydoc_validate.validate(target)["errors"] if code in CHECKS
        ]
        if errors:
            found[name] = errors
    return found


def test_public_api_has_numpydoc_docstrings():
    api = public_api()
    assert len(api) > 30, f"only {len(api)} public names found: is __all__ missing somewhere?"
    found = offences(api)
    report = "\n".join(f"{name}: {'; '.join(errors)}" for name, errors in sorted(found.items()))
    assert not found, f"{len(found)} public name(s) with incomplete docstrings:\n{report}"


def test_the_check_finds_each_kind_of_offence():
    """The validator reports what the test relies on, for functions of each kind it must judge."""

    def undocumented(x):
        return x

    def wrong_parameters(x, y):
        """Add.

        Parameters
        ----------
        x
            One.
        z
            Not a parameter.
        """
        return x + y

    def returns_none(x):
        """Check ``x``.

        Parameters
        ----------
        x
            Anything.
        """
        if x is None:
            return None

    codes = {
        func.__name__: {
            code for code, _ in numpydoc_validate.validate(numpydoc_validate.get_doc_object(func))["errors"]
        }
        for func in (undocumented, wrong_parameters, returns_none)
    }
    assert "GL08" in codes["undocumented"]
    assert {"PR01", "PR02", "RT01"} <= codes["wrong_parameters"]
    assert not codes["returns_none"] & set(CHECKS)
