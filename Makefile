# The README's two commands are `make demo` and `make test`; everything else is a helper.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c requirements/constraints.txt
DEPS := requirements/constraints.txt $(wildcard packages/*/pyproject.toml)
export PIP_PROGRESS_BAR := off

.PHONY: demo test lint typecheck docs unit cookbook bench install install-dev clean

demo: $(VENV)/.runtime
	$(BIN)/tokenlean bench --quick

test: $(VENV)/.dev lint typecheck docs unit cookbook

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements/runtime.txt $(DEPS) | $(BIN)/python
	$(PIP) -r requirements/runtime.txt
	$(BIN)/python -m tokenlean_core.offline
	touch $@

$(VENV)/.dev: requirements/dev.txt $(VENV)/.runtime
	$(PIP) -r requirements/dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/nbstripout --verify cookbook/*.ipynb

typecheck: $(VENV)/.dev
	$(BIN)/mypy

docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

unit: $(VENV)/.dev .redis/.ok .cache/vllm-venv/.ok
	$(BIN)/pytest

# every notebook runs top to bottom on local models (outputs stay stripped in git)
cookbook: $(VENV)/.dev .redis/.ok
	$(BIN)/pytest -q -p no:cacheprovider --nbmake --nbmake-timeout=600 -o addopts="" cookbook

# Redis Stack (search + JSON) for the cache/memory tests, installed under .redis by our own script
.redis/.ok: scripts/redis-stack.sh
	bash scripts/redis-stack.sh .redis

# vLLM 0.33.0's own Python code (no CUDA torch, ~0.9 GB) for tests/vllm/test_vllm_conformance.py,
# installed under .cache/vllm-venv by our own script (wheels kept in ~/.cache/tokenlean/wheels)
.cache/vllm-venv/.ok: scripts/vllm-conformance-env.sh $(VENV)/.dev
	TOKENLEAN_MAIN_PYTHON=$(BIN)/python bash scripts/vllm-conformance-env.sh .cache/vllm-venv

$(VENV)/.bench: requirements/bench.txt $(VENV)/.dev
	$(PIP) -r requirements/bench.txt
	touch $@

# every component benchmark (the train_*.py scripts fit shipped models: run them by hand), then the
# results table that docs/benchmarks.md includes
BENCHMARKS := core cache memory compress router vllm

bench: $(VENV)/.bench .redis/.ok
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py; done
	$(BIN)/python benchmarks/render.py

clean:
	rm -rf $(VENV) .redis .cache/vllm-venv site .mypy_cache .ruff_cache .pytest_cache .hypothesis
