# text-recognizer: one command sets up, one runs the demo, one runs every test.
# Every target sets up first when needed; `make setup` is quick once done.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Which torch to install first. The default is the CPU wheel CI uses; on a GPU machine
# install your CUDA build into .venv first (setup/README.md), and setup keeps it.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.setup-done
# pytest processes for `make test` (notebooks and tests run two at a time on 2 cores)
PYTEST_WORKERS ?= 2

.PHONY: help setup system-packages test lint check-sync demo train export clean-nbs bench lambda-local

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) system-packages  ## create .venv with torch first, then the project, pinned

$(STAMP): pyproject.toml setup/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade "pip>=24"
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	@$(PY) -m pip install -q -c setup/constraints.txt -e ".[dev]"
	@touch $(STAMP)
	@echo "setup: .venv ready ($$($(PY) -c 'import torch; print("torch", torch.__version__)'))"

system-packages:  ## Debian packages the tests use (Chromium, Tesseract), installed when missing
	@bash setup/system-packages.sh

check-sync: $(STAMP)  ## fail when the library or the notebooks are out of sync with nbdev
	@$(PY) setup/check_sync.py
	@$(PY) setup/update_readme.py --check

lint: $(STAMP)  ## ruff over the library, the tests, the benchmarks and the setup scripts
	@$(BIN)/ruff check text_recognizer tests bench setup conftest.py

test: setup check-sync lint  ## run every test: notebooks (smoke mode) under nbmake, then tests/
	@TEXT_RECOGNIZER_SMOKE=1 $(BIN)/pytest --nbmake nbs labs tests -p no:cacheprovider -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

demo: setup  ## run the main job: the shipped model reading handwriting
	@$(BIN)/text-recognizer demo $(DEMO_ARGS)

train: setup  ## train the shipped line model from scratch (~80 min on 2 cores; TRAIN_ARGS to change it)
	@$(BIN)/text-recognizer train --recipe line_lstm $(TRAIN_ARGS)

export: $(STAMP)  ## export the notebooks into text_recognizer/ and clean them
	@$(BIN)/nbdev_export
	@$(BIN)/nbdev_clean
	@$(BIN)/nbdev_clean --fname labs
	@$(PY) setup/update_readme.py

bench: setup  ## run the benchmarks and regenerate the README's results
	@$(PY) bench/run_all.py $(BENCH_ARGS)

lambda-local: setup  ## serve the Lambda handler on 127.0.0.1:9000 through the real awslambdaric
	@$(PY) -m text_recognizer.serverless_local
