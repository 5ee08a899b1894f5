#!/usr/bin/env python3
"""Pipeline step 'graph' as the Nextflow module calls it: same as 'scdefr graph'."""
from scdefr.cli import run_step

run_step("graph")
