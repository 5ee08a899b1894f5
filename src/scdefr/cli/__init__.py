"""``scdefr`` command line: one sub-command per pipeline step, plus ``run`` and ``simulate``.

Each command lives in its own module (``scdefr.cli.<command>``) exposing ``HELP`` (one line for
``scdefr --help``), ``add_io_arguments(parser)`` (its input and output paths) and ``main(args)``.
Its options come from :data:`scdefr.options.COMMAND_OPTIONS`, all checked before any work starts.

Every problem ends as one ``scdefr <command>: error: ...`` line and a non-zero exit status: 2 for bad
input or options, 3 when memory ran out, 4 when the system refused a read or a write.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ScdefrError, exit_status, one_line
from ..options import COMMAND_OPTIONS, CommonOptions, preset_values
from ._common import configure
from ._options import add_option_group, options_from

COMMANDS = ("simulate", "qc", "graph", "train", "export", "run")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) so pipeline logs stay readable."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(preset: str = "none") -> argparse.ArgumentParser:
    """The command line; ``preset`` replaces the defaults of the options it names (given ones still win)."""
    from .. import __version__

    parser = OneLineErrorParser(
        prog="scdefr",
        description="scDEFR single-cell clustering: qc -> graph -> train -> export, or all at once with 'run'.",
    )
    parser.add_argument("--version", action="version", version=f"scdefr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_io_arguments(command)
        groups = (*COMMAND_OPTIONS[name], CommonOptions)
        for group in groups:
            add_option_group(command, group)
        names = {option for group in groups for option in group.names()}
        command.set_defaults(handler=module.main, **preset_values(preset, names))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed; with ``--preset``, parsed again with the preset's values as defaults."""
    args = build_parser().parse_args(argv)
    if getattr(args, "preset", "none") != "none":
        args = build_parser(args.preset).parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        common = options_from(args, CommonOptions)
        for group in COMMAND_OPTIONS[args.command]:  # every option checked before any work
            options_from(args, group)
        configure(common)
        args.handler(args)
    except KeyboardInterrupt:
        print(f"scdefr {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ScdefrError, MemoryError, OSError) as exc:
        print(f"scdefr {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return exit_status(exc)
    return 0


def run_step(command: str) -> None:
    """Entry point of the ``bin/scdefr_<step>.py`` scripts that the Nextflow modules call."""
    sys.exit(main([command, *sys.argv[1:]]))
