# One command to set up and train, one to set up and test. Run `make help` for the rest.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline for the tests only (the caller's choice, not the library's): a fresh clone's tests
# need no network (GSM8K falls back to the fixture in grpo_lib/assets/gsm8k_sample).
TEST_ENV := HF_HUB_OFFLINE=1 MPLBACKEND=Agg
# Extra flags for `make lab` / `make train`, e.g. ARGS="--allow-root --no-browser --ip=0.0.0.0" in a container.
ARGS ?=

.PHONY: help setup train test test-fast lab strip execute nbval clean

help:
	@echo "make train      set up, then train the tiny model with GRPO on the CPU (the main job)"
	@echo "make test       set up, then run every test and execute every notebook (smoke profile)"
	@echo "make test-fast  the unit tests only, no notebooks"
	@echo "make lab        set up, then JupyterLab on the repository root, opening notebook 00"
	@echo "                (flags: make lab ARGS=\"--allow-root --no-browser --ip=0.0.0.0\")"
	@echo "make strip      strip outputs from exercises/ and solutions/ (lessons keep theirs: make execute)"
	@echo "make execute    execute the lessons in notebooks/ and store their outputs (smoke profile)"
	@echo "make nbval      check the lessons' stored outputs against a fresh execution"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml scripts/install_torch.sh | $(BIN)/python
	PY=$(BIN)/python bash scripts/install_torch.sh
	$(BIN)/python -m pip install --disable-pip-version-check -e ".[test,trl]"
	touch $@

setup: $(VENV)/.installed

# A second run into runs/tiny is refused: make train ARGS=--overwrite (or ARGS=--resume).
train: setup
	$(BIN)/python -m grpo_lib.train --preset tiny --output-dir runs/tiny $(ARGS)

test: setup
	$(TEST_ENV) $(BIN)/python -m pytest --durations=25

test-fast: setup
	$(TEST_ENV) $(BIN)/python -m pytest -m "not notebook"

# The repository root is served (exercises/, solutions/, README.md reachable); notebook 00 opens.
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(ARGS) notebooks/00_welcome.ipynb

strip: setup
	$(BIN)/python scripts/strip_notebooks.py

execute: setup
	$(TEST_ENV) OMP_NUM_THREADS=1 $(BIN)/python scripts/execute_notebooks.py

nbval: setup
	$(TEST_ENV) $(BIN)/python -m pytest tests/test_nbval_outputs.py -m notebook

clean:
	rm -rf $(VENV) runs .pytest_cache
