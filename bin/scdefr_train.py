#!/usr/bin/env python3
"""Pipeline step 'train' as the Nextflow module calls it: same as 'scdefr train'."""
from scdefr.cli import run_step

run_step("train")
