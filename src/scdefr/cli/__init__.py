"""``scdefr`` command line: one sub-command per pipeline step, plus ``run`` and ``simulate``.

Each step lives in its own module (``scdefr.cli.<step>``) exposing:

- ``HELP``: one line for ``scdefr --help``;
- ``add_io_arguments(parser)``: the step's own ``--input``/``--output`` style arguments;
- ``add_options(parser)``: the step's tuning options (``scdefr run`` reuses them, so option names
  must be unique across steps);
- ``main(args)``: does the work; raises :class:`scdefr.errors.ScdefrError` for anything the user
  can fix.

Every problem the user can fix ends as a single ``scdefr <step>: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ScdefrError
from ._common import add_common_options, configure

COMMANDS = ("simulate", "qc", "graph", "train", "export", "run")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) so pipeline logs stay readable."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = OneLineErrorParser(
        prog="scdefr",
        description="scDEFR single-cell clustering: qc -> graph -> train -> export, or all at once with 'run'.",
    )
    parser.add_argument("--version", action="version", version=f"scdefr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineErrorParser)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        step = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_io_arguments(step)
        module.add_options(step)
        add_common_options(step)
        step.set_defaults(handler=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure(args)
        args.handler(args)
    except ScdefrError as exc:
        print(f"scdefr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scdefr {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def run_step(command: str) -> None:
    """Entry point of the ``bin/scdefr_<step>.py`` scripts that the Nextflow modules call."""
    sys.exit(main([command, *sys.argv[1:]]))
