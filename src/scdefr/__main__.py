"""``python -m scdefr``: the ``scdefr`` command line where its console script is not on the PATH."""

import sys

from .cli import main

sys.exit(main())
