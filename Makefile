# The two commands of the README's quick start: `make repro` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install repro test bench prefect-server serve

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

# one pytest-xdist worker per core; worksteal keeps both busy while one runs the minutes-long pipeline tests;
# the slowest tests are listed so a CI log shows where the suite's 15-minute budget goes
TEST_WORKERS ?= auto
test: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

bench: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) benchmarks/run_all.py

# Run with Prefect (README "Run with Prefect"): a local server with its SQLite database under .prefect/ ...
PREFECT_PORT ?= 4200
export PREFECT_SERVER_ANALYTICS_ENABLED = false
prefect-server: install
	PREFECT_HOME="$(CURDIR)/.prefect" $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

# ... and, in a second terminal, the process that executes the deployments' runs, one at a time.
serve: install
	PATH="$(abspath $(BIN)):$$PATH" PREFECT_HOME="$(CURDIR)/.prefect" \
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(PY) -m flows.deployments
