#!/usr/bin/env python3
"""Pipeline step 'graph' as the Nextflow module calls it: same as 'scdefr graph'."""

import sys

from scdefr_bin import run

sys.exit(run("graph", sys.argv[1:]))
