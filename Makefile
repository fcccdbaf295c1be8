# Two commands for a fresh clone (both idempotent; the first run creates .venv/):
#   make demo   set up, then a short end-to-end run of part 3 (QM9, offline)
#   make test   set up, then ruff (lint and format check) and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: install demo test clean

install: $(STAMP)

# Reinstall only when the packaging file changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m part3.train --model both --epochs 1 --train_subset 10000 --eval_subset 2000 --threads 1 --results_dir results/demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

clean:
	rm -rf results/demo .pytest_cache
