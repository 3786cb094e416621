# GopherGate: `make run` serves on http://127.0.0.1:8080, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench bench-peers bench-dashboard install install-dev env clean ui ui-if-npm

# The dashboard UI (ui/, TypeScript + Vite) builds into the package's static folder (git-ignored). It is
# rebuilt only when its sources changed: static/index.html is the stamp (vite rewrites it on every build).
UI_STATIC := src/gophergate/static/index.html
UI_SOURCES := $(shell find ui/src -type f 2>/dev/null) ui/index.html ui/package.json ui/package-lock.json \
	ui/vite.config.ts ui/tsconfig.json
UI_MODULES := ui/node_modules/.package-lock.json
NPM_MISSING := echo "error: npm (Node.js >= 18) is needed to build the dashboard UI in ui/ (Debian: apt-get install nodejs npm)" >&2; exit 1

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

$(UI_MODULES): ui/package.json ui/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(NPM_MISSING); }
	cd ui && npm ci --no-audit --no-fund
	touch $@

$(UI_STATIC): $(UI_SOURCES) $(UI_MODULES)
	@command -v npm >/dev/null 2>&1 || { $(NPM_MISSING); }
	cd ui && npm run build
	touch $@

ui: $(UI_STATIC)

# `make run` builds the UI when npm is there; on a machine with only Python and make the gateway still runs
# (its /v1 API and /api), and / says how to get the UI.
ui-if-npm:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory ui; \
	else echo "note: npm not found, the dashboard UI is not built (the API works; install Node.js >= 18 and npm, then make run)" >&2; fi

install: $(STAMP)
install-dev: $(DEV_STAMP)

# Writes a fresh random 32-byte encryption key into .env (mode 0600) unless one is there.
env: $(STAMP)
	$(BIN)/python -m gophergate init-env --path .env

run: env ui-if-npm
	$(BIN)/gophergate serve

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(DEV_STAMP) $(UI_STATIC)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The same load against GopherGate and the LiteLLM proxy (a pinned version, installed once into its own
# virtualenv under bench/.cache/), in the same run; see bench/README.md.
bench-peers: $(DEV_STAMP)
	$(BIN)/python -m bench.peers $(BENCH_ARGS)

# Seeds 1,000,000 log rows into a temporary SQLite (and PostgreSQL with GOPHERGATE_TEST_POSTGRES_URL or
# BENCH_ARGS=--postgres=URL) and times every dashboard query; see bench/README.md.
bench-dashboard: $(DEV_STAMP)
	$(BIN)/python -m bench.dashboard $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache src/gophergate/static ui/node_modules
