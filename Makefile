# One command to set up and train, one to set up and test. Run `make help` for the rest.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: help setup train test test-fast lab strip clean

help:
	@echo "make train      set up, then train the tiny model with GRPO on the CPU (the main job)"
	@echo "make test       set up, then run every test and execute every notebook (smoke profile)"
	@echo "make test-fast  the unit tests only, no notebooks"
	@echo "make lab        set up, then open JupyterLab on the first notebook"
	@echo "make strip      strip outputs from every notebook before committing"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml scripts/install_torch.sh | $(BIN)/python
	PY=$(BIN)/python bash scripts/install_torch.sh
	$(BIN)/python -m pip install --disable-pip-version-check -e ".[test,trl]"
	touch $@

setup: $(VENV)/.installed

train: setup
	$(BIN)/python -m grpo_lib.train --preset tiny --output-dir runs/tiny

test: setup
	MPLBACKEND=Agg $(BIN)/python -m pytest --durations=25

test-fast: setup
	MPLBACKEND=Agg $(BIN)/python -m pytest -m "not notebook"

lab: setup
	HF_HUB_OFFLINE=0 $(BIN)/jupyter lab notebooks/00_welcome.ipynb

strip: setup
	$(BIN)/python scripts/strip_notebooks.py

clean:
	rm -rf $(VENV) runs .pytest_cache
