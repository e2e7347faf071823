# Skylab's developer commands. `make sync` once, then any of the others.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= skylab-demo

.PHONY: sync test test-all lint format typecheck standardize demo bench

# torch is pinned in pyproject.toml: plain pip then takes the CPU wheel a machine already has.
sync:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'

test:
	$(BIN)/python -m pytest

test-all:
	$(BIN)/python -m pytest -m ''

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck:
	$(BIN)/mypy skylab tests bench

standardize: format lint typecheck

# The main job on the embedded default: a fresh experiment from the tiny-bigram template.
demo:
	$(BIN)/skylab init $(DEMO_DIR)
	$(BIN)/skylab history -C $(DEMO_DIR)

bench:
	$(BIN)/python bench/history.py
