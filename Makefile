# sft-integrity: `make demo` sets up and audits the bundled demo world; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := data/demo
SOURCES := $(DEMO)/sources.yaml
DEMO_ROWS ?= 2000
DEMO_SEED ?= 7

export DAGSTER_HOME := $(CURDIR)/data/dagster_home
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1

.PHONY: setup demo ui test lint bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

$(SOURCES): | $(BIN)/.installed
	$(BIN)/python -m demo generate --out $(DEMO) --rows $(DEMO_ROWS) --seed $(DEMO_SEED) > /dev/null

# Registers one partition per source and runs audit_source for each (raw -> scored -> audited,
# checks included: a failed blocking check stops the demo), then mix_and_train (the demo model
# trains on the mix), all in one process (assets/demo_run.py); prints what landed and the
# checkpoint's lineage.
demo: setup $(SOURCES) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m assets.demo_run
	$(BIN)/integrity summary $(SOURCES)
	$(BIN)/integrity lineage checkpoint latest
	@echo
	@echo "Browse lineage, runs and check results: make ui  ->  http://127.0.0.1:3000"

# The local instance: no telemetry, no first-run dialog over the UI's pages (nux).
$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.dev.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.dev.yaml $@

ui: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.scoring

clean:
	rm -rf data
