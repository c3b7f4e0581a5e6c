# Everything a fresh machine needs is installed by these targets: venvs from the lock (requirements/), npm, Maven.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: regex-classes setup test lint cfn-lint checkov test-ids demo bench bench-e2e clean kinesis-local kcl lambda lock lock-upgrade

setup: $(STAMP) kinesis-local kcl

# kinesis-local (npm, pinned in infra/local/package-lock.json): the Kinesis emulator the KCL can talk to (h2c).
KINESIS_LOCAL := infra/local/node_modules/.package-lock.json
kinesis-local: $(KINESIS_LOCAL)

$(KINESIS_LOCAL): infra/local/package.json infra/local/package-lock.json
	npm ci --prefix infra/local --no-audit --no-fund
	touch $(KINESIS_LOCAL)

# KCL MultiLangDaemon jars (infra/kcl/pom.xml) into infra/kcl/jars/, then amazon-kclpy (the version
# requirements/kcl.txt locks) built from the same local Maven repository: its setup.py looks the jars up under
# KCL_MVN_REPO_SEARCH_URL instead of downloading them.
MVN_REPO ?= $(HOME)/.m2/repository
KCL_STAMP := infra/kcl/jars/.fetched
KCLPY_STAMP := $(VENV)/.kclpy-installed
kcl: $(KCL_STAMP) $(KCLPY_STAMP)

$(KCL_STAMP): infra/kcl/pom.xml
	rm -rf infra/kcl/jars
	mvn -q -B -Dmaven.repo.local=$(MVN_REPO) -f infra/kcl/pom.xml dependency:copy-dependencies
	touch $(KCL_STAMP)

$(KCLPY_STAMP): requirements/kcl.txt $(KCL_STAMP) $(STAMP)
	KCL_MVN_REPO_SEARCH_URL=file://$(abspath $(MVN_REPO))/ \
		$(BIN)/pip install --quiet --require-hashes -r requirements/kcl.txt
	touch $(KCLPY_STAMP)

# The venv holds exactly requirements/dev.txt (hashes checked), then this project itself, editable, built by the
# locked setuptools. A changed lock reinstalls (what the lock dropped stays until `make clean`).
$(STAMP): requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The lock (README, "Dependencies"): pyproject.toml keeps the ranges the package supports, requirements/*.txt the
# exact versions and hashes every install here uses, resolved by uv for Python 3.11 on Linux x86_64.
# runtime.txt (the package's dependencies) constrains kcl.txt (runtime plus amazon-kclpy: the consumer image) and
# dev.txt (runtime, the dev extra and requirements/tools.in), so the tests run what ships. runtime.txt is resolved
# for the oldest place it runs, Lambda's python3.11 (Amazon Linux 2, glibc 2.26): the native dependencies as
# manylinux2014 wheels (google-re2's after 1.1 need glibc 2.27), except jq, whose wheels are manylinux_2_26, a tag
# uv cannot name (`make lambda`'s pip can, and fails on any pin Lambda cannot load).
# `make lock` re-resolves after pyproject.toml changed, keeping every pin it can; `make lock-upgrade` moves
# everything to the newest versions the ranges allow.
LOCK_TARGET := --python-version 3.11 --python-platform linux
RUNTIME_TARGET := --python-version 3.11 --python-platform x86_64-manylinux2014 \
	--only-binary google-re2 --only-binary orjson --only-binary zlib-ng
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes $(LOCK_UPGRADE) --custom-compile-command 'make lock'
IAC_SCAN_REQUIREMENTS = $(BIN)/python -c "import tomllib; \
print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['iac-scan'], sep='\n')"

lock: $(STAMP)
	$(UV_COMPILE) $(RUNTIME_TARGET) pyproject.toml -o requirements/runtime.txt
	$(UV_COMPILE) $(LOCK_TARGET) pyproject.toml --extra kcl -c requirements/runtime.txt -o requirements/kcl.txt
	$(UV_COMPILE) $(LOCK_TARGET) pyproject.toml requirements/tools.in --extra dev -c requirements/runtime.txt \
		-o requirements/dev.txt
	$(IAC_SCAN_REQUIREMENTS) | $(UV_COMPILE) $(LOCK_TARGET) - -o requirements/checkov.txt

lock-upgrade: LOCK_UPGRADE := --upgrade
lock-upgrade: lock

lint: setup cfn-lint checkov
	$(BIN)/ruff check stream_processor tests benchmarks
	$(BIN)/mypy --strict stream_processor
	$(BIN)/lint-imports --no-cache

cfn-lint: setup
	$(BIN)/cfn-lint infra/cloudformation/*.yaml

# checkov (IaC security scanner) in a venv of its own: its pins would move the project's boto3 and packaging.
# pyproject.toml's `iac-scan` extra names it, requirements/checkov.txt locks it. Every suppression is in the
# template, with its reason.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --require-hashes -r requirements/checkov.txt
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

# The Lambda deployment package (infra/cloudformation/lambda.yaml): this project and exactly the dependencies
# requirements/runtime.txt locks (hashes checked), built for Lambda's python3.11 (Amazon Linux 2, glibc 2.26,
# x86_64): manylinux_2_26 wheels (jq's) and older manylinux2014 ones. The project's own wheel joins the lock with
# its hash, so one pip run installs everything and fails if the lock lacks a dependency the project declares.
LAMBDA_PLATFORMS := --platform manylinux_2_26_x86_64 --platform manylinux2014_x86_64
lambda: setup
	rm -rf build/wheel build/lambda build/lambda.zip build/lambda-requirements.txt
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir build/wheel .
	{ cat requirements/runtime.txt; for wheel in build/wheel/*.whl; do \
		echo "$$wheel $$($(BIN)/pip hash $$wheel | tail -n 1)"; done; } > build/lambda-requirements.txt
	$(BIN)/pip install --quiet --target build/lambda $(LAMBDA_PLATFORMS) --implementation cp --python-version 3.11 \
		--only-binary=:all: --require-hashes -r build/lambda-requirements.txt
	cd build/lambda && $(PYTHON) -m zipfile -c ../lambda.zip *
	@echo "build/lambda.zip: upload it as lambda.yaml's CodeBucket/CodeKey"

demo: setup
	$(BIN)/stream-processor demo

# After a jq bump (make lock-upgrade): the regex shorthands' code points as the new libjq reads them, shipped so a
# worker does not read them at start-up; tests/unit/matcher/test_regex.py fails until this is run.
regex-classes: setup
	$(BIN)/python -c "import json; from stream_processor.matcher.jqregex import shorthand_tables; \
		print(json.dumps(shorthand_tables(), separators=(',', ':')))" > stream_processor/matcher/shorthand_classes.json

bench: setup
	$(BIN)/python benchmarks/run.py

# the whole chain on the local stack (producer, kinesis-local, KCL, processors, receiver); about two minutes
bench-e2e: setup
	$(BIN)/python benchmarks/e2e.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache infra/local/node_modules infra/kcl/jars
