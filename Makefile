# Quick start: `make run` serves the gateway, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/aigate.yaml

.PHONY: run test bench lint clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-run: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	mkdir -p data
	$(BIN)/aigate serve --config $(CONFIG)

test: $(VENV)/.installed-dev
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check aigate tests bench

bench: $(VENV)/.installed-dev
	$(BIN)/pip install -q 'matplotlib>=3.8'
	$(BIN)/python -m bench.run

# Re-resolve the lock files after changing dependencies in pyproject.toml.
lock: | $(BIN)/python
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile -q pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile -q pyproject.toml --extra dev -o requirements-dev.lock

clean:
	rm -rf $(VENV) data .pytest_cache
