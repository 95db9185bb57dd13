# seqlab: two commands do all the set-up (see README).
#   make quickstart   create .venv, install, run experiments/quickstart.yaml
#   make test         create or refresh .venv with the dev extra, lint, run the whole test suite
#   make test-fast    the same, the unit tier only (tests/unit, no servers): a few minutes
#
# TORCH_SPEC lets a machine pin its torch build before the project installs,
# e.g. `make test TORCH_SPEC=torch==2.13.0` for a CPU wheel. Users keep an unpinned torch.

PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
TORCH_SPEC ?=
PYTEST_ARGS ?=

.PHONY: quickstart test test-fast lint bench clean-home

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps record what was installed, so a second `make` is a no-op until pyproject.toml changes.
$(VENV)/.stamp-runtime: pyproject.toml | $(BIN)/python
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)")
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)")
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.stamp-runtime

quickstart: $(VENV)/.stamp-runtime
	$(BIN)/seqlab run experiments/quickstart.yaml

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint
	$(BIN)/python -m pytest tests/unit -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.stamp-dev
	$(BIN)/python benchmarks/quickstart_wall.py
