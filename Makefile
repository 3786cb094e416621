# GopherGate: `make run` serves on http://127.0.0.1:8080, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench bench-dashboard install install-dev env clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

# Writes a fresh random 32-byte encryption key into .env (mode 0600) unless one is there.
env: $(STAMP)
	$(BIN)/python -m gophergate init-env --path .env

run: env
	$(BIN)/gophergate serve

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Seeds 1,000,000 log rows into a temporary SQLite (and PostgreSQL with GOPHERGATE_TEST_POSTGRES_URL or
# BENCH_ARGS=--postgres=URL) and times every dashboard query; see bench/README.md.
bench-dashboard: $(DEV_STAMP)
	$(BIN)/python -m bench.dashboard $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
