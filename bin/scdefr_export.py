#!/usr/bin/env python3
"""Pipeline step 'export' as the Nextflow module calls it: same as 'scdefr export'."""
from scdefr.cli import run_step

run_step("export")
