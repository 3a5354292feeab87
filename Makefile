# `make test` and `make demo` work on a fresh machine: they build .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; set TORCH_SPEC= (empty) to keep whatever torch >= 2.4 is available.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: test test-all demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC) -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check fastadapt tests benchmarks
	$(BIN)/ruff format --check fastadapt tests benchmarks

demo: $(STAMP)
	$(BIN)/fastadapt demo --run-dir runs/demo

bench: $(STAMP)
	$(BIN)/python benchmarks/sampler.py --out runs/bench_sampler.json

clean:
	rm -rf $(VENV) runs .pytest_cache
