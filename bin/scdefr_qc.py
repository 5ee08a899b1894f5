#!/usr/bin/env python3
"""Pipeline step 'qc' as the Nextflow module calls it: same as 'scdefr qc'."""

import sys

from scdefr_bin import run

sys.exit(run("qc", sys.argv[1:]))
