# zpctl — the only entry point: install, demo, test, lint (CI runs `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install deps venv demo test test-unit test-integration lint bench clean

help:
	@echo "make demo   install what is needed, validate and render the shipped inventories,"
	@echo "            and run the lab platform on loopback"
	@echo "make test   install what is needed and run the whole test suite"
	@echo "make lint   ruff, mypy (strict) and lint-imports (the package layers)"
	@echo "make bench  capacity benchmark (several minutes); figures into docs/PERFORMANCE.md"
	@echo "make clean  remove build output (not the lab: zpctl lab down)"

install: deps venv

deps:
	@scripts/install-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)
	@echo "install: virtualenv $(VENV) up to date"

demo: install
	@scripts/demo.sh

# The tests start their own lab on the lab's loopback addresses: stop a demo lab first.
# The lab runs FreeSWITCH switches: without FreeSWITCH, `make test` stops here, saying how
# to install it (and no real-FreeSWITCH test may skip).
# The unit tests run on two workers; the lab's tests one after another (one lab at a time
# on its fixed loopback addresses), with the slowest listed.
test: install
	@$(BIN)/zpctl lab down >/dev/null 2>&1 || true
	@ZPCTL_REQUIRE_FREESWITCH=1 $(BIN)/python tests/freeswitch_binary.py
	ZPCTL_REQUIRE_FREESWITCH=1 $(BIN)/pytest -q -n 2 tests/unit tests/golden
	ZPCTL_REQUIRE_FREESWITCH=1 $(BIN)/pytest -q --durations=15 tests/integration

test-unit: venv
	$(BIN)/pytest -q tests/unit tests/golden

test-integration: install
	$(BIN)/pytest -q -m integration

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Not part of CI: minutes of SIPp load at stepped rates.  Stops a demo lab first.
bench: install
	@$(BIN)/zpctl lab down >/dev/null 2>&1 || true
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
