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

setup: $(BIN)/scdefr nf-tools

# Groovy 4 (the jars npm-groovy-lint ships) for tests/test_nextflow_*.py: they parse, inspect and
# render the pipeline's .nf/.config files without Nextflow. Needs java >= 17 and npm; without them
# those tests skip with the reason.
NF_TOOLS        := tests/nextflow/.tools
NPM_GROOVY_LINT ?= npm-groovy-lint@18.0.0
GROOVY_JAR      := $(NF_TOOLS)/node_modules/npm-groovy-lint/lib/java/groovy/lib/groovy-4.0.26.jar

$(GROOVY_JAR):
	@if command -v npm >/dev/null && command -v java >/dev/null; then \
		npm install --prefix $(NF_TOOLS) --no-audit --no-fund --ignore-scripts --loglevel=error $(NPM_GROOVY_LINT); \
	else \
		echo "nf-tools: npm or java missing, the Nextflow checks will be skipped"; \
	fi

nf-tools: $(GROOVY_JAR)

# The single-machine runner on simulated demo data (1,500 cells, 5 planted types), with a network
# and schedule small enough for a few minutes on 2 CPU cores (the defaults are for real data).
DEMO_OPTIONS ?= --n-top-genes 500 --n-clusters auto
demo: setup
	$(BIN)/scdefr simulate --n-cells 1500 --n-genes 1000 --n-clusters 5 --seed 0 --output $(DEMO_OUT)/demo_counts.h5ad
	$(BIN)/scdefr run --input $(DEMO_OUT)/demo_counts.h5ad --outdir $(DEMO_OUT) --sample demo --label-key cell_type $(DEMO_OPTIONS)
	@echo "Demo results in $(DEMO_OUT)/demo/ (open export/demo.umap.png, export/demo.metrics.json)"

test: setup
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

test-containers: setup
	bash containers/test_containers.sh

benchmark: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf results .pytest_cache
