# One command runs every check: `make test` (ruff lint, ruff format check, pytest).
# CI (.ci/run) runs exactly that.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstalled whenever pyproject.toml or this file changes (or the venv is recreated).
# The loadtest extra (locust) is installed too: tests/loadtest runs locust headless.
STAMP := $(VENV)/.stamp-install
# The test extra's docker-compose builds PyYAML 5.4.1 from source, which needs Cython<3
# (build-constraints.txt): PIP_BUILD_CONSTRAINT for pip >= 25.3, PIP_CONSTRAINT before it.
CONSTRAINTS := $(CURDIR)/build-constraints.txt
PIP_INSTALL := PIP_CONSTRAINT=$(CONSTRAINTS) PIP_BUILD_CONSTRAINT=$(CONSTRAINTS) $(BIN)/pip install

.PHONY: test lint format bench run locust webfrontend clean

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile build-constraints.txt $(VENV)/pyvenv.cfg
	$(PIP_INSTALL) -q -e '.[test,loadtest]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m loadtest.bench_protocol

run: $(STAMP)
	$(BIN)/python -m kvcache -p 11211 -l 127.0.0.1

# Load a running kvcache (`make run` in another shell). LOCUST_ARGS= gives the web UI on :8089.
LOCUST_HOST ?= 127.0.0.1:11211
LOCUST_ARGS ?= --headless -u 50 -r 10 -t 30s
locust: $(STAMP)
	$(BIN)/locust -f loadtest/locustfile.py --host $(LOCUST_HOST) $(LOCUST_ARGS)

# README's web-frontend sweep (~10 min; writes results/webfrontend.{csv,png,md}).
# One point instead: make webfrontend WEBFRONTEND_ARGS='run --mode far --local 25'
WEBFRONTEND_ARGS ?= sweep --local 5,10,25,50,75,100 --modes far,paging
webfrontend: $(STAMP)
	$(BIN)/python -m loadtest.webfrontend $(WEBFRONTEND_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
