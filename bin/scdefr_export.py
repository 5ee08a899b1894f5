#!/usr/bin/env python3
"""Pipeline step 'export' as the Nextflow module calls it: same as 'scdefr export'."""

import sys

from scdefr_bin import run

sys.exit(run("export", sys.argv[1:]))
