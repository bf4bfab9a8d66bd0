# The two commands of the README's quick start: `make repro` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install repro test bench clean-outputs

install: $(VENV)/.installed

# torch first, pinned to the CPU wheel on disk: a range, or letting another package pull it, takes a CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

repro: install
	PATH="$(abspath $(BIN)):$$PATH" dvc repro

test: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m pytest

bench: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) benchmarks/run_all.py
