# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lock lint typecheck check bench bench-table bench-scale image-test prometheus-test clean

$(STAMP): pyproject.toml .ci/constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is needed (python3.11 or python3 on PATH)"; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed; found $$($(PYTHON) --version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c .ci/constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## the worker against the built-in simulator (DEMO_ARGS="--linger 60" keeps /status up; "--protocol agents": Agents API sessions)
	$(BIN)/tool-worker demo $(DEMO_ARGS)

test: $(STAMP)  ## the whole suite
	$(BIN)/pytest

lint: $(STAMP)  ## ruff, the import contracts
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)  ## mypy --strict on the package, the tools and the typed examples
	$(BIN)/mypy --strict worker tools tests/typing/handlers.py tests/deploy

bench: $(STAMP)  ## tool-worker vs the openai-SDK baselines against the simulator, Assistants and Agents API (BENCH_ARGS=--quick)
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

bench-table: $(STAMP)  ## only the issue's table (#15): table40 and table40_faulty, ~1 min
	$(BIN)/python -m tests.benchmarks --scenario table40 --scenario table40_faulty $(BENCH_ARGS)

bench-scale: $(STAMP)  ## 10,000 watched threads under one request budget
	$(BIN)/python -m tests.benchmarks.scale $(BENCH_ARGS)

image-test: $(STAMP)  ## build the image on a bootstrapped Debian base and run it with podman (root)
	PYTHON=$(BIN)/python deploy/ci/image-test

prometheus-test: $(STAMP)  ## a real Prometheus scrapes a worker: targets, queries, an alert firing
	$(BIN)/pytest -m live tests/deploy/test_prometheus.py

check: lint typecheck test

lock: $(STAMP)  ## take the newest releases of every dependency into .ci/constraints.txt (then: make test)
	$(BIN)/python -m pip install --quiet --upgrade -e '.[dev]'
	{ sed -n '/^#/p' .ci/constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > .ci/constraints.tmp
	mv .ci/constraints.tmp .ci/constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
