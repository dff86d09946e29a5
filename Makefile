# Two commands on a fresh machine with only Python and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-library test lint typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,dask,mcp]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/project-manager delegate-multiple --file tasks.example.yaml --repo .

demo-library: $(BIN)/.installed
	$(BIN)/python examples/seed_examples.py

test: lint typecheck unit

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# One worker per core, at most 4: most tests wait on processes and git, not on the CPU.
# loadgroup: the tests of one xdist_group (the Dask cluster's) share one worker, and its cluster.
unit: $(BIN)/.installed
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadgroup

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
