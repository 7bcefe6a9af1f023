# EggPool developer entry points. Only Python 3.11+ and make are needed:
# every target creates .venv and installs the package with its dev extra.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit chromium fuzz bench docs clean help

help:
	@echo "make demo   the proxy on loopback in front of simulated providers (DEMO_ARGS=--traffic)"
	@echo "make test   lint, format check, mypy --strict and every test (what CI runs)"
	@echo "make lint   ruff check + ruff format --check"
	@echo "make types  mypy --strict eggpool"
	@echo "make unit   pytest only (installs Debian's chromium for the browser tests if missing)"
	@echo "make fuzz   long fuzzing runs of the parsers (FUZZ_EXAMPLES=50000 by default)"
	@echo "make bench  the performance benchmarks (figures in docs/performance.md)"
	@echo "make docs   regenerate the parts of docs/ generated from the code"
	@echo "make clean  remove the virtualenv and caches"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "EggPool needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eggpool demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check eggpool tests fuzz bench tools
	$(BIN)/ruff format --check eggpool tests fuzz bench tools

types: $(STAMP)
	$(BIN)/mypy --strict eggpool

unit: $(STAMP) chromium
	HYPOTHESIS_PROFILE=ci $(BIN)/pytest tests fuzz

chromium:
	tools/ensure-chromium

test: lint types unit

FUZZ_EXAMPLES ?= 50000
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest fuzz -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/bench.py

docs: $(STAMP)
	$(BIN)/python tools/gen_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist test-artifacts
