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

# The main job on the embedded default: the gpt-pretrain experiment on the offline demo corpus,
# shrunk to CPU size, trained once for the CPU profile's 60-second budget.
DEMO_CONSTANTS := DEPTH=4 ASPECT_RATIO=32 HEAD_DIM=64 DEVICE_BATCH_SIZE=16 TOTAL_BATCH_SIZE=4096
demo:
	$(BIN)/skylab init $(DEMO_DIR) --template gpt-pretrain
	$(BIN)/skylab prepare --source demo -C $(DEMO_DIR)
	$(BIN)/skylab constants -C $(DEMO_DIR) $(DEMO_CONSTANTS)
	cd $(DEMO_DIR) && SKYLAB_PROFILE=cpu $(abspath $(BIN))/python train.py

bench:
	$(BIN)/python bench/history.py
