# Skylab's developer commands. `make sync` once, then any of the others.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= skylab-demo

.PHONY: sync system-deps test quick lint format typecheck standardize demo bench

# torch is pinned in pyproject.toml: plain pip then takes the CPU wheel a machine already has.
sync:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'

# The Debian packages the browser, SSH, Slurm and terminal tests need (sudo apt-get; CI runs it too).
system-deps:
	bash scripts/system-deps.sh

# Everything, the slow tests too (what CI runs). `make quick` skips those marked slow.
test:
	$(BIN)/python -m pytest -m ''

quick:
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck:
	$(BIN)/mypy skylab tests bench

standardize: format lint typecheck

# The main job on the embedded default: `skylab demo` (offline corpus, CPU-sized GPT, a short sweep
# through the real loop, history and the HTML report), in ./skylab-demo.
demo:
	$(BIN)/skylab demo $(DEMO_DIR)

bench:
	$(BIN)/python bench/history.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/decisions.py
