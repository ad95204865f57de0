# Quick start: `make run` serves the gateway, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/aigate.yaml

.PHONY: run test bench bench-streams lint clean lock

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

# Style, formatting, the layer contract and types: what .ci/run checks before the tests.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check aigate tests bench
	$(BIN)/ruff format --check aigate tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/pip install -q 'matplotlib>=3.8'
	$(BIN)/python -m bench.run

# Open streams (~8 min): N concurrent long streams through every gateway; bench/STREAMS.md
# and streams.png, then bench/RESULTS.md re-rendered to include them.
bench-streams: $(VENV)/.installed-dev
	$(BIN)/pip install -q 'matplotlib>=3.8'
	$(BIN)/python -m bench.streams
	$(BIN)/python -m bench.report bench/results.json

# Re-resolve the lock files after changing dependencies in pyproject.toml.
lock: | $(BIN)/python
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile -q pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile -q pyproject.toml --extra dev -o requirements-dev.lock

clean:
	rm -rf $(VENV) data .pytest_cache

# Swagger UI, vendored so /api/docs and /bp/docs work offline (needs npm; the files are committed).
SWAGGER_UI_VERSION ?= 5.36.0
SWAGGER_UI_DIR := aigate/api/static/swagger-ui
.PHONY: swagger-ui
swagger-ui:
	rm -rf $(SWAGGER_UI_DIR) && mkdir -p $(SWAGGER_UI_DIR)
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null \
	  && tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz && cd - >/dev/null \
	  && for f in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png LICENSE NOTICE; do \
	       cp $$tmp/package/$$f $(SWAGGER_UI_DIR)/; done && rm -rf $$tmp
	echo $(SWAGGER_UI_VERSION) > $(SWAGGER_UI_DIR)/VERSION

# The TypeScript client (clients/typescript): install its build tools from the lock file and build it.
.PHONY: clients
clients:
	cd clients/typescript && npm ci --no-audit --no-fund && npm run build
