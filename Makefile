# EggPool developer entry points. Only Python 3.11+ and make are needed:
# every target creates .venv and installs the package with its dev extra.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit chromium accel accel-unit accel-tests fuzz bench bench-accel \
	docs clean help

help:
	@echo "make demo   the proxy on loopback in front of simulated providers (DEMO_ARGS=--traffic)"
	@echo "make test   lint, format check, mypy --strict and every test (what CI runs)"
	@echo "make lint   ruff check + ruff format --check"
	@echo "make types  mypy --strict eggpool"
	@echo "make unit   pytest only (installs Debian's chromium for the browser tests if missing)"
	@echo "make accel  the accelerated build in .venv-accel (hot modules compiled by mypyc)"
	@echo "make accel-unit  the core, simulator, shell, CLI and fuzz tests on the accelerated build"
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

# The accelerated build (docs/performance.md): the checkout installed (not editable) with
# the hot modules compiled to C by mypyc; rebuilt when a source file changes. It is built
# from an sdist, in a directory of its own: the compiler leaves its extension modules
# beside the sources, and in the checkout they would shadow the .py files being edited.
ACCEL := .venv-accel
ACCEL_STAMP := $(ACCEL)/.installed
SOURCES := $(shell find eggpool -name '*.py')

$(ACCEL_STAMP): $(STAMP) pyproject.toml $(SOURCES)
	tools/ensure-compiler $(PYTHON)
	[ -x $(ACCEL)/bin/python ] || $(PYTHON) -m venv $(ACCEL)
	$(ACCEL)/bin/python -m pip install --quiet --upgrade pip
	rm -rf build/accel && $(BIN)/python -m hatchling build -t sdist -d build/accel >/dev/null
	HATCH_BUILD_HOOK_ENABLE_MYPYC=true $(ACCEL)/bin/python -m pip install --quiet \
		"$$(ls build/accel/eggpool-*.tar.gz)[dev]"
	$(ACCEL)/bin/python -P -c 'import sys, eggpool; sys.exit(not eggpool.compiled_modules() and "make accel: nothing was compiled")'
	$(ACCEL)/bin/python -P -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
		| xargs -I{} sh -c 'echo "$(CURDIR)" > {}/eggpool-checkout-tests.pth'
	touch $(ACCEL_STAMP)

accel: $(ACCEL_STAMP)

# The tests of the core and of what drives it (simulator, shells, CLI), on the accelerated
# build. The .pth file above puts the checkout after the installed package on sys.path
# (for tests/helpers), and pytest's importlib mode adds nothing before it: `eggpool` is
# the build's.
# Without a C compiler (and no way to install one) they are skipped, except under CI.
accel-unit: $(STAMP)
	@if tools/ensure-compiler $(PYTHON); then $(MAKE) --no-print-directory accel-tests; \
	elif [ -n "$${CI:-}" ]; then exit 1; \
	else echo "make accel-unit: skipped: no C compiler for the accelerated build" >&2; fi

accel-tests: $(ACCEL_STAMP)
	EGGPOOL_EXPECT_COMPILED=1 HYPOTHESIS_PROFILE=ci $(ACCEL)/bin/pytest --import-mode=importlib \
		-p no:cacheprovider tests/core tests/simulated tests/test_harness.py \
		tests/test_accelerated.py tests/shells tests/cli fuzz

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

test: lint types unit accel-unit

FUZZ_EXAMPLES ?= 50000
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest fuzz -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/bench.py
	@if tools/ensure-compiler $(PYTHON); then $(MAKE) --no-print-directory bench-accel; \
	else echo "make bench: the accelerated build is not measured: no C compiler" >&2; fi

bench-accel: $(ACCEL_STAMP)
	$(ACCEL)/bin/python bench/bench.py --installed sse_decode openai_observer \
		anthropic_observer pool_request pool_stream_20 simulate serve

docs: $(STAMP)
	$(BIN)/python tools/gen_docs.py

clean:
	rm -rf $(VENV) $(ACCEL) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist test-artifacts
