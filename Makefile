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
	$(BIN)/integrity demo generate --out $(DEMO) --rows $(DEMO_ROWS) --seed $(DEMO_SEED) > /dev/null

# Registers one partition per source, ingests, scores and audits each through the Dagster CLI (checks
# included: a failed blocking check fails the command), prints what landed, then mixes every
# source, trains the demo model on the mix and prints the checkpoint's lineage.
demo: setup $(SOURCES)
	mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	set -e; for source in $$($(BIN)/python -m assets.partitions); do \
	  echo "== raw_sft, scored_sft, audited_sft [$$source]"; \
	  $(BIN)/dagster asset materialize -f definitions.py --select raw_sft,scored_sft,audited_sft --partition $$source \
	    > data/dagster_home/last_materialize.log 2>&1 \
	    || { tail -40 data/dagster_home/last_materialize.log; exit 1; }; \
	done
	$(BIN)/integrity summary $(SOURCES)
	@echo "== training_mix, training_checkpoint (the demo trainer runs through Dagster Pipes)"
	$(BIN)/dagster asset materialize -f definitions.py --select training_mix,training_checkpoint \
	  > data/dagster_home/last_materialize.log 2>&1 \
	  || { tail -40 data/dagster_home/last_materialize.log; exit 1; }
	$(BIN)/integrity lineage checkpoint latest
	@echo
	@echo "Browse lineage, runs and check results: make ui  ->  http://127.0.0.1:3000"

ui: setup
	mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/scoring.py

clean:
	rm -rf data
