# geoverdict: `make demo` and `make test` are all a fresh machine needs (see README.md).
# Every target is idempotent: stamps skip what is already installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every package and its SHA-256, for every extra (make lock regenerates it).
LOCK ?= requirements/dev.lock

.PHONY: setup demo test test-unit lint bench proofs clean help helm lock
.DEFAULT_GOAL := help

help:
	@echo "make demo   set up, then run the demo (stack, consumer, verdicts)"
	@echo "make test   set up, lint, then run every test (integration tests start real servers)"
	@echo "make test-unit  the tests that need no server (no Java, Kafka or Redis) in a minute,"
	@echo "                but for three slow end-to-end runs (make test runs them)"
	@echo "make bench  set up, then run the benchmarks into bench/ and docs/benchmarks.md"
	@echo "make proofs the exactly-once proofs at full size (tens of minutes) into"
	@echo "            bench/exactly-once.json and docs/benchmarks.md"
	@echo "make lint   ruff + mypy"
	@echo "make lock   regenerate the hash-locked requirements after changing a dependency"
	@echo "make clean  remove the virtual environment, caches and run folders"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Hash-checked: a package whose SHA-256 differs from the lock's is refused. The project itself
# is built with the locked setuptools (no build isolation: nothing unpinned is fetched).
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# After changing a dependency (pyproject.toml, deploy/torchserve/requirements.in); needs PyPI.
lock: | $(BIN)/python
	test -x .cache/pip-tools/bin/python || $(PYTHON) -m venv .cache/pip-tools
	.cache/pip-tools/bin/python -m pip install -q "pip-tools==7.6.2"
	.cache/pip-tools/bin/python deploy/lock_requirements.py

# `stack check` also fetches the Kafka jars from Maven Central once (cached in .cache/kafka).
setup: $(VENV)/.installed
	@$(BIN)/geoverdict stack check

# Lint and unit tests need only the virtual environment: no Java, Kafka jars or Redis.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --python-version 3.10 -p geoverdict_common -p geoverdict_training.serving \
	  -p geoverdict_modelserver  # what the Triton image runs on its Python 3.10

test: setup helm lint
	$(BIN)/pytest

# Two workers stealing work (the tiny model the training tests share is trained once), one
# torch thread each: tiny tensors run faster without threads fighting over the cores.
test-unit: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/pytest -m "not integration and not server and not slow" -p no:cacheprovider \
		-n 2 --dist worksteal

demo: setup
	$(BIN)/geoverdict demo

# The benchmarks are a development package beside the product: run from the checkout.
bench: setup
	$(BIN)/python -m benchmarks

# The system tests at the issue's sizes (make test runs them small); add the hour-long soak with
# `$(BIN)/pytest tests/system --full-size --soak-rate N`.
proofs: setup
	$(BIN)/pytest tests/system --full-size -p no:cacheprovider

# Helm for the chart's static checks (tests/deploy/test_helm.py): built once from the Go module
# proxy into .cache/helm/ by deploy/helm/install-helm.sh; without Go those tests skip.
helm:
	@if command -v go >/dev/null; then deploy/helm/install-helm.sh >/dev/null; \
	else echo "go not found: Helm not built, the chart's tests will skip"; fi

clean:
	rm -rf $(VENV) .cache .run .mypy_cache .ruff_cache .pytest_cache
