# Tollgate — two commands on a fresh machine:
#   make run    set up, start the sidecar on its embedded store, and watch a demo workload
#   make test   set up and run every check and test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Go from the official archive, where it unpacks, is used when no other is on PATH.
ifneq ($(wildcard /usr/local/go/bin/go),)
export PATH := $(PATH):/usr/local/go/bin
endif

.PHONY: run test test-tools test-unit lint proto proto-check bench bench-peers clean soak hostile jaeger-build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: $(BIN)/python pyproject.toml clients/python/pyproject.toml
	@# The distributions' former names (tollgate, tollgate-client) own the same modules: gone first.
	$(BIN)/pip uninstall --quiet --yes tollgate tollgate-client 2>/dev/null || true
	rm -rf sidecar/tollgate.egg-info clients/python/tollgate_client.egg-info
	$(BIN)/pip install --quiet -e clients/python -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.runtime
	@scripts/run.sh

test: test-tools jaeger-build $(VENV)/.dev proto-check
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Jaeger (a Go program the telemetry tests run) builds in the background, once per machine, while the rest is set
# up; the tests wait for it on the same lock (tests/support/jaeger.py).
jaeger-build:
	@bash scripts/build_jaeger.sh >/dev/null 2>&1 &

# What the suite needs besides Python: redis-server and redis-cli, Node.js with npm, Go. Installed from Debian's
# packages when run as root (Go aside, which comes with the machine); otherwise the command to run, and a stop.
test-tools:
	@bash scripts/test_tools.sh

# The contract: generated code current, buf lint clean, no breaking change against main.
proto-check: $(VENV)/.dev
	$(BIN)/python scripts/gen_protos.py --check
	cd proto && ../$(BIN)/buf lint
	cd proto && if git rev-parse --verify -q main >/dev/null; then \
		../$(BIN)/buf breaking --against '../.git#branch=main,subdir=proto'; fi

# The tests that need nothing but Python: the domain, the application, the wire and the Python
# client, in process (the folders mirror sidecar/tollgate; the rest start processes or servers).
UNIT := tests/app tests/config tests/grpc tests/learn tests/routing $(wildcard tests/test_*.py) \
	$(filter-out %_live.py %/test_install.py,$(wildcard tests/clients/python/test_*.py))

test-unit: $(VENV)/.dev
	$(BIN)/python -m pytest -q $(UNIT)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy

proto: $(VENV)/.dev
	$(BIN)/python scripts/gen_protos.py

# Latency, CPU, throughput and memory of the full per-call path against a bare gRPC echo, per store.
bench: $(VENV)/.dev
	$(BIN)/python benchmarks/bench.py --store sqlite,redis $(BENCH_ARGS)

# Tollgate beside the gateways an app would otherwise put in its path (Portkey from npm, LiteLLM in a venv of its
# own, both cached under ~/.cache/tollgate-bench): not part of `make test`.
bench-peers: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_peers.py $(BENCH_ARGS)

# The caller's-view harness over many seeds: real sidecars and stores under injected faults, every
# charge checked against what the callers were told. SOAK_SEEDS (20), SOAK_STORES, SOAK_OPS (2000).
soak: $(VENV)/.dev
	seeds="$(SOAK_SEEDS)"; stores="$(SOAK_STORES)"; ops="$(SOAK_OPS)"; \
	$(BIN)/python -m tests.harness --seeds "1-$${seeds:-20}" --store "$${stores:-redis,sqlite,failopen,cluster}" \
		--ops "$${ops:-2000}"

# The hostile campaign: one real sidecar attacked over gRPC as a stranger would (garbage bytes on every
# method, other tenants' ids, hostile figures, oversized input) between honest tenants; the checks are in
# tests/hostile/campaign.py. HOSTILE_CALLS (20000), HOSTILE_SEED (1), HOSTILE_STORE (sqlite, or redis: stalls too).
hostile: $(VENV)/.dev
	calls="$(HOSTILE_CALLS)"; seed="$(HOSTILE_SEED)"; store="$(HOSTILE_STORE)"; \
	$(BIN)/python -m tests.hostile --calls "$${calls:-20000}" --seed "$${seed:-1}" --store "$${store:-sqlite}"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis tollgate.db tollgate.db-wal tollgate.db-shm
