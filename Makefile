# Set-up and the everyday commands. Everything installs into .venv; nothing is needed beforehand but Python 3.10+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 has a CPU wheel.
TORCH  ?= torch==2.13.0
DEMO_OUT ?= results/demo

.PHONY: setup nf-tools demo test test-fast test-containers benchmark clean

$(BIN)/scdefr: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" -c requirements/constraints.txt
	$(BIN)/pip install -q -e ".[test]" -c requirements/constraints.txt
	touch $@

setup: $(BIN)/scdefr

# What tests/test_nextflow_*.py need beyond .venv (`make test` installs them, `make demo` does not):
# - Groovy 4 (the jars npm-groovy-lint ships): the tests parse, inspect and render the pipeline's
#   .nf/.config files without Nextflow. Needs java >= 17 and npm; without them those tests skip.
# - nf-core/tools, pinned, in its own virtualenv outside the checkout (its package holds template
#   .nf files that `nextflow lint` would walk): the tests run its lint offline.
NF_TOOLS        := tests/nextflow/.tools
NPM_GROOVY_LINT ?= npm-groovy-lint@18.0.0
GROOVY_JAR      := $(NF_TOOLS)/node_modules/npm-groovy-lint/lib/java/groovy/lib/groovy-4.0.26.jar
NF_CORE_VERSION ?= 4.2.1
NF_CORE_VENV    ?= $(HOME)/.cache/scdefr/nf-core-$(NF_CORE_VERSION)

$(GROOVY_JAR):
	@if command -v npm >/dev/null && command -v java >/dev/null; then \
		npm install --prefix $(NF_TOOLS) --no-audit --no-fund --ignore-scripts --loglevel=error $(NPM_GROOVY_LINT); \
	else \
		echo "nf-tools: npm or java missing, the Nextflow checks will be skipped"; \
	fi

$(NF_CORE_VENV)/bin/nf-core:
	$(PYTHON) -m venv $(NF_CORE_VENV)
	$(NF_CORE_VENV)/bin/pip install -q "nf-core==$(NF_CORE_VERSION)"

nf-tools: $(GROOVY_JAR) $(NF_CORE_VENV)/bin/nf-core

# The single-machine runner on simulated demo data (1,500 cells, 5 planted types), with a network
# and schedule small enough for a few minutes on 2 CPU cores (the defaults are for real data).
DEMO_OPTIONS ?= --n-top-genes 500 --n-clusters auto
demo: setup
	$(BIN)/scdefr simulate --n-cells 1500 --n-genes 1000 --n-clusters 5 --seed 0 --output $(DEMO_OUT)/demo_counts.h5ad
	$(BIN)/scdefr run --input $(DEMO_OUT)/demo_counts.h5ad --outdir $(DEMO_OUT) --sample demo --label-key cell_type $(DEMO_OPTIONS)
	@echo "Demo results in $(DEMO_OUT)/demo/ (open export/demo.umap.png, export/demo.metrics.json)"

test: setup nf-tools
	SCDEFR_NF_CORE=$(NF_CORE_VENV) $(BIN)/python -m pytest -q tests

test-fast: setup nf-tools
	SCDEFR_NF_CORE=$(NF_CORE_VENV) $(BIN)/python -m pytest -q -m "not slow" tests

test-containers: setup
	bash containers/test_containers.sh

benchmark: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf results .pytest_cache
