# One place for set-up, the demo and the tests. `make demo` and `make test` create the
# virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch must be installed before anything that depends on torch,
# or pip pulls a multi-GB CUDA build. On a GPU machine: make TORCH=torch test
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/latentatlas analyze example:lattice --out results/demo

test: setup
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
