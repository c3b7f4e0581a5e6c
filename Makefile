# Everything a fresh machine needs is installed by these targets (Python venv, npm, Maven).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint cfn-lint demo bench clean kinesis-local

setup: $(STAMP) kinesis-local

# kinesis-local (npm, pinned in infra/local/package-lock.json): the Kinesis emulator the KCL can talk to (h2c).
KINESIS_LOCAL := infra/local/node_modules/.package-lock.json
kinesis-local: $(KINESIS_LOCAL)

$(KINESIS_LOCAL): infra/local/package.json infra/local/package-lock.json
	npm ci --prefix infra/local --no-audit --no-fund
	touch $(KINESIS_LOCAL)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: setup cfn-lint
	$(BIN)/ruff check stream_processor tests benchmarks
	$(BIN)/mypy --strict stream_processor

cfn-lint: setup
	$(BIN)/cfn-lint infra/cloudformation/*.yaml

test: lint
	$(BIN)/pytest -q

demo: setup
	$(BIN)/stream-processor demo

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache infra/local/node_modules
