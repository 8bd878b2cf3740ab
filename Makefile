# NRR Lab — the two commands: `make run` and `make test`. Every target is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ASSETS := webapp/static/vendor/htmx.min.js
HOST ?= 127.0.0.1
PORT ?= 5000
# Test processes for the non-browser tests (pytest-xdist; 0 runs them in this process).
# The browser tests always run afterwards in one process: one server, one Chromium.
TEST_WORKERS ?= 2

.PHONY: run serve test test-db install assets migrate seed lint bench clean help

help:
	@echo "make run    set up everything and serve http://$(HOST):$(PORT) (SQLite, demo data on first run)"
	@echo "make test   set up and run the whole test suite"
	@echo "make lint | migrate | seed | serve | bench | clean"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) $(ASSETS)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

$(ASSETS): node_modules/.package-lock.json
	mkdir -p webapp/static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js $(ASSETS)

assets: $(ASSETS)

migrate: install
	$(BIN)/nrrlab db upgrade

seed: migrate
	$(BIN)/nrrlab seed-demo --if-empty

serve: install
	$(BIN)/nrrlab serve --host $(HOST) --port $(PORT)

run: seed
	$(BIN)/nrrlab serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -m "not e2e" -n $(TEST_WORKERS)
	$(BIN)/python -m pytest tests/e2e

test-db: install
	$(BIN)/python -m pytest -m "db and not e2e" -n $(TEST_WORKERS)

lint: install
	$(BIN)/ruff check .

# Issue 18: pages under gunicorn, analyze vs DuckDB, 1M-row uploads (BENCH_ARGS=--quick: minutes).
bench: install
	$(BIN)/python benchmarks/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules webapp/static/vendor .pytest_cache
