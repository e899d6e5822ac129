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

.PHONY: help setup system-packages test lint check-sync demo train export clean-nbs bench lambda-local test-colab docs

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

cell-stats: $(STAMP)  ## exported-cell sizes per notebook; fail when the median > 12 or a cell lacks its asserting example
	@$(PY) setup/cell_stats.py --check

lint: $(STAMP)  ## ruff over the library, the tests, the benchmarks and the setup scripts
	@$(BIN)/ruff check text_recognizer tests bench setup conftest.py

test: setup check-sync lint  ## run every test: nbs/ (smoke mode) and tests/, then the labs as in Colab (test-colab)
	@TEXT_RECOGNIZER_SMOKE=1 $(PY) -m pytest --nbmake nbs tests -p no:cacheprovider -n $(PYTEST_WORKERS) \
		-p setup.nbmake_copies --nbmake-copies $(EXECUTED) $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-colab

# Each notebook runs once: the run that tests it keeps its executed copy here, and `make docs` renders it.
EXECUTED := docs/_build/executed

test-colab: system-packages  ## the labs as a learner in Colab runs them: a fresh venv, the real setup cell, every lab
	@PYTHON=$(PYTHON) TORCH_SPEC="$(TORCH_SPEC)" PYTEST_WORKERS=$(PYTEST_WORKERS) NBMAKE_COPIES=$(CURDIR)/$(EXECUTED) \
		PYTEST_ARGS="$(COLAB_PYTEST_ARGS)" bash setup/test_colab.sh

docs: setup  ## build the course site (docs/_build/html) from the executed notebooks, then check it in Chromium
	@PYTEST_WORKERS=$(PYTEST_WORKERS) $(PY) docs/build.py
	@TEXT_RECOGNIZER_SITE=docs/_build/html $(PY) -m pytest tests/test_docs.py -p no:cacheprovider -q

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
