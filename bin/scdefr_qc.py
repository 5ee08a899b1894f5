#!/usr/bin/env python3
"""Pipeline step 'qc' as the Nextflow module calls it: same as 'scdefr qc'."""
from scdefr.cli import run_step

run_step("qc")
