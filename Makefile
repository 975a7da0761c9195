# Tollgate — two commands on a fresh machine:
#   make run    set up, start the sidecar on its embedded store, and watch a demo workload
#   make test   set up and run every check and test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint proto proto-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: $(BIN)/python pyproject.toml clients/python/pyproject.toml
	$(BIN)/pip install --quiet -e clients/python -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.runtime
	@scripts/run.sh

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check .

proto: $(VENV)/.dev
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis tollgate.db tollgate.db-wal tollgate.db-shm
