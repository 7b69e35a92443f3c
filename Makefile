# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
# torch first, pinned: on this kind of machine the pin takes a local CPU build; on a GPU
# machine it is the CUDA build from PyPI. Override for another CUDA version, e.g.
# make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" run
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start the API and one worker on 127.0.0.1:8000 (every FRAMECAST_* variable is honoured).
run: $(STAMP)
	$(BIN)/framecast serve --dev

## Run the whole test suite (unit, integration, acceptance).
test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python bench/preview_render.py
	$(BIN)/python bench/api_load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
