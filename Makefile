# The whole set-up on a fresh clone: `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/helpdesk-kpi demo

# ruff (rules in pyproject.toml) over the whole tree, mypy --strict over connectors/ and kpi_core/; zero findings.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# On two worker processes (pytest-xdist): each test has its own temporary folder, store and loopback ports.
test: lint
	$(BIN)/python -m pytest -q -n 2

# The ingest bench; with the `bench` extra installed, also `$(BIN)/python bench/kpis.py --compare duckdb` (see README).
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) demo-report.html demo-data
