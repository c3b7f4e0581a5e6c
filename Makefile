# Everything a fresh machine needs is installed by these targets (Python venv, npm, Maven).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint cfn-lint checkov test-ids demo bench bench-e2e clean kinesis-local kcl lambda lambda-pins

setup: $(STAMP) kinesis-local kcl

# kinesis-local (npm, pinned in infra/local/package-lock.json): the Kinesis emulator the KCL can talk to (h2c).
KINESIS_LOCAL := infra/local/node_modules/.package-lock.json
kinesis-local: $(KINESIS_LOCAL)

$(KINESIS_LOCAL): infra/local/package.json infra/local/package-lock.json
	npm ci --prefix infra/local --no-audit --no-fund
	touch $(KINESIS_LOCAL)

# KCL MultiLangDaemon jars (infra/kcl/pom.xml) into infra/kcl/jars/, then amazon-kclpy built from the same
# local Maven repository (its setup.py looks the jars up under KCL_MVN_REPO_SEARCH_URL instead of downloading).
MVN_REPO ?= $(HOME)/.m2/repository
KCLPY_VERSION := 3.1.3
KCL_STAMP := infra/kcl/jars/.fetched
kcl: $(KCL_STAMP)

$(KCL_STAMP): infra/kcl/pom.xml | $(STAMP)
	rm -rf infra/kcl/jars
	mvn -q -B -Dmaven.repo.local=$(MVN_REPO) -f infra/kcl/pom.xml dependency:copy-dependencies
	KCL_MVN_REPO_SEARCH_URL=file://$(abspath $(MVN_REPO))/ $(BIN)/pip install --quiet amazon-kclpy==$(KCLPY_VERSION)
	touch $(KCL_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: setup cfn-lint checkov
	$(BIN)/ruff check stream_processor tests benchmarks
	$(BIN)/mypy --strict stream_processor
	$(BIN)/lint-imports --no-cache

cfn-lint: setup
	$(BIN)/cfn-lint infra/cloudformation/*.yaml

# checkov (IaC security scanner) in a venv of its own: its pins would move the project's boto3 and packaging.
# Its version is pyproject.toml's `iac-scan` extra. Every suppression is in the template, with its reason.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): pyproject.toml
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet "$$($(PYTHON) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['iac-scan'])")"
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --directory infra/cloudformation --framework cloudformation --compact --quiet --skip-download

# pytest-xdist workers must collect the same tests: two collections a second apart must agree, or a test id
# depends on the clock or on chance (gzip headers carry the time) and the run would fail at random.
test-ids: setup
	$(BIN)/pytest --collect-only -q -p no:cacheprovider | grep '::' > .pytest-ids-1
	sleep 1.1
	$(BIN)/pytest --collect-only -q -p no:cacheprovider | grep '::' > .pytest-ids-2
	diff .pytest-ids-1 .pytest-ids-2 || { echo "test ids differ between two collections: give those parameters fixed ids"; exit 1; }
	rm -f .pytest-ids-1 .pytest-ids-2

# Two pytest processes (the CI machine's 2 cores), each test file in one of them with its own local stack:
# about 8 minutes instead of 15. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
test: lint test-ids
	$(BIN)/pytest -q -rfEs --durations=15 -n $(TEST_WORKERS) --dist loadfile

# The Lambda deployment package (infra/cloudformation/lambda.yaml): this project and its dependencies at the
# versions infra/lambda/requirements.txt pins (those `make test` ran), built for Lambda's python3.11 (Amazon
# Linux 2, glibc 2.26, x86_64): manylinux_2_26 wheels (jq's) and older manylinux2014 ones.
LAMBDA_PLATFORMS := --platform manylinux_2_26_x86_64 --platform manylinux2014_x86_64
lambda: setup
	rm -rf build/wheel build/lambda build/lambda.zip
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir build/wheel .
	$(BIN)/pip install --quiet --target build/lambda $(LAMBDA_PLATFORMS) --implementation cp --python-version 3.11 \
		--only-binary=:all: -r infra/lambda/requirements.txt build/wheel/cloudtrail_stream_processor-*.whl
	cd build/lambda && $(PYTHON) -m zipfile -c ../lambda.zip *
	@echo "build/lambda.zip: upload it as lambda.yaml's CodeBucket/CodeKey"

# After a dependency bump: pin the Lambda package to what .venv now has (and run `make test` on it first).
lambda-pins: setup
	$(BIN)/python infra/lambda/pin.py > infra/lambda/requirements.txt

demo: setup
	$(BIN)/stream-processor demo

bench: setup
	$(BIN)/python benchmarks/run.py

# the whole chain on the local stack (producer, kinesis-local, KCL, processors, receiver); about two minutes
bench-e2e: setup
	$(BIN)/python benchmarks/e2e.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache infra/local/node_modules infra/kcl/jars
