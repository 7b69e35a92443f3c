# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
# torch, pinned, for the tests (tiny models) and `make gpu`: on this kind of machine the pin
# takes a local CPU build; on a GPU machine it is the CUDA build from PyPI. Override for another
# CUDA version, e.g. make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" gpu
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
# What serving needs (the API, the preview engine, the PostgreSQL and S3 drivers): no torch.
SERVE_STAMP := $(VENV)/.installed-serve
# What testing needs on top: torch and diffusers (the tiny models), the test tools.
STAMP := $(VENV)/.installed
# The real model on a GPU: torch and the `hunyuan` extra.
GPU_STAMP := $(VENV)/.installed-gpu
# `make run` keeps its database and files in the project, not in the user's data folder; any
# `framecast` command run from here finds ./framecast-data too (framecast.settings.PROJECT_DATA_DIR).
DATA_DIR := $(or $(FRAMECAST_DATA_DIR),$(CURDIR)/framecast-data)

# One pytest process per core; a test file stays in one process, so a module's server or model
# is built once. PYTEST_ARGS= runs the suite in one process.
PYTEST_ARGS ?= -n auto --dist loadfile
# The tests keep the bytecode they compile even where the environment says not to write any
# (Docker images often set PYTHONDONTWRITEBYTECODE=1): every pytest process and every server or
# worker a test starts would otherwise compile src/ and tests/ again (about 6 s of CPU a pytest
# process), and the packages' modules that the venv was installed without (below).
# __pycache__ is git-ignored.
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q

.PHONY: run gpu test test-slow test-all lint typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[postgres,s3]'
	touch $@

# --no-compile: pip would compile all of the ~19,000 modules these install, one at a time, which
# was 46 of the 76 s this step took here; the tests import about a third of them, and Python
# compiles and keeps (see PYTEST) those on first import.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-compile $(TORCH)
	$(BIN)/pip install --quiet --no-compile -e '.[test]'
	touch $@ $(SERVE_STAMP)

$(GPU_STAMP): pyproject.toml $(SERVE_STAMP)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[hunyuan,postgres,s3]'
	touch $@

## Start the API and one worker on 127.0.0.1:8000 (every FRAMECAST_* variable is honoured).
run: $(SERVE_STAMP)
	@echo "data folder: $(DATA_DIR) (set FRAMECAST_DATA_DIR for another; .venv/bin/framecast run from here uses ./framecast-data)"
	FRAMECAST_DATA_DIR='$(DATA_DIR)' $(BIN)/framecast serve --dev

## Install the real model's stack (torch, diffusers) into .venv; then `make run` serves it.
gpu: $(GPU_STAMP)

## Run the test suite (unit, integration, acceptance) but the tests marked slow.
test: $(STAMP)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

## The tests marked slow (pyproject.toml says which and why); .ci/run runs them after `make test`.
test-slow: $(STAMP)
	$(PYTEST) -m slow $(PYTEST_ARGS)

## Every test in one run.
test-all: $(STAMP)
	$(PYTEST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test test-slow

bench: $(STAMP)
	$(BIN)/python bench/preview_render.py
	$(BIN)/python bench/api_load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
