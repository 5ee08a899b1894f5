"""``scdefr`` command line: one sub-command per pipeline step, plus ``run`` and ``simulate``.

Each command lives in its own module (``scdefr.cli.<command>``) exposing ``HELP`` (one line for
``scdefr --help``), ``add_io_arguments(parser)`` (its input and output paths) and ``main(args)``.
Its options come from :data:`scdefr.options.COMMAND_OPTIONS`, all checked before any work starts.

Every problem ends as one ``scdefr <command>: error: ...`` line and a non-zero exit status: 2 for bad
input or options, 3 when memory ran out, 4 when the system refused a read or a write (130 after
Ctrl-C, 143 after SIGTERM, as shells report those signals).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys

from .._files.h5ad import hdf5_broken
from ..errors import ScdefrError, exit_status, is_out_of_memory, one_line
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


class Terminated(BaseException):
    """SIGTERM (a scheduler or Nextflow stopping the task): unwinds like Ctrl-C, so that temporary
    files and staging folders are removed on the way out."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    status = 0
    with _terminate_on_sigterm():
        try:
            common = options_from(args, CommonOptions)
            for group in COMMAND_OPTIONS[args.command]:  # every option checked before any work
                options_from(args, group)
            configure(common)
            args.handler(args)
        except KeyboardInterrupt:
            print(f"scdefr {args.command}: interrupted", file=sys.stderr)
            status = 130
        except Terminated:
            print(f"scdefr {args.command}: terminated", file=sys.stderr)
            status = 143
        except Exception as exc:
            if not isinstance(exc, (ScdefrError, OSError)) and not is_out_of_memory(exc):
                raise  # a bug: its traceback is what a report needs
            print(f"scdefr {args.command}: error: {one_line(exc)}", file=sys.stderr)
            status = exit_status(exc)
    if status and hdf5_broken():
        # A failed HDF5 write leaves objects the HDF5 library crashes on at interpreter shutdown.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


@contextlib.contextmanager
def _terminate_on_sigterm():
    def terminate(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_step(command: str) -> None:
    """Entry point of the ``bin/scdefr_<step>.py`` scripts that the Nextflow modules call."""
    sys.exit(main([command, *sys.argv[1:]]))
