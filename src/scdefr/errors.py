"""One exception type for every problem the user can fix.

The command line turns it into a one-line message and a non-zero exit, so nothing below the CLI
prints errors or calls ``sys.exit``.
"""


class ScdefrError(Exception):
    """Bad input, impossible parameters or an unusable environment, explained in one line."""
