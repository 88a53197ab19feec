# One command runs every check: `make test` (ruff lint, ruff format check, pytest).
# CI (.ci/run) runs exactly that.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstalled whenever pyproject.toml or this file changes (or the venv is recreated).
# The loadtest extra (locust) is installed too: tests/loadtest runs locust headless.
STAMP := $(VENV)/.stamp-install
# The test extra's docker-compose needs PyYAML<6, built from source, which needs Cython<3
# (build-constraints.txt): PIP_BUILD_CONSTRAINT for pip >= 25.3, PIP_CONSTRAINT before it.
# It is installed on its own first, so that kvcache's own build gets Cython 3.
CONSTRAINTS := $(CURDIR)/build-constraints.txt
PIP_OLD_CYTHON := PIP_CONSTRAINT=$(CONSTRAINTS) PIP_BUILD_CONSTRAINT=$(CONSTRAINTS) $(BIN)/pip

.PHONY: ext test test-pure test-containers image lint format bench run locust webfrontend clean certs

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.py kvcache/compiled.py Makefile build-constraints.txt $(VENV)/pyvenv.cfg
	$(PIP_OLD_CYTHON) install -q 'PyYAML>=3.10,<6'
	$(BIN)/pip install -q -e '.[test,loadtest]'
	touch $(STAMP)

# The hot modules' extensions (kvcache/compiled.py), rebuilt in place when a source changes:
# an extension older than its .py would shadow it with stale code.
EXT_STAMP := $(VENV)/.stamp-extensions
PY_SOURCES := $(wildcard protocol/*.py protocol/*/*.py runtime/*.py kvcache/*.py farserver/*.py \
	protocol/*/*.pxd runtime/*.pxd kvcache/*.pxd farserver/*.pxd)

$(EXT_STAMP): $(STAMP) $(PY_SOURCES)
	$(BIN)/python setup.py -q build_ext --inplace
	touch $(EXT_STAMP)

ext: $(EXT_STAMP)  # build the extensions in place (make test does too)

test: $(STAMP) $(EXT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# The protocol, runtime and kvcache tests again on the pure-Python build: a copy of the
# sources without extensions (as KVCACHE_NO_EXTENSIONS=1 builds it), this venv's packages.
PURE := build/pure
test-pure: $(STAMP)
	rm -rf $(PURE) && mkdir -p $(PURE)
	tar -c --exclude=./.venv --exclude=./build --exclude=./.git --exclude='*.so' \
		--exclude=__pycache__ --exclude=.pytest_cache --exclude=./results . | tar -x -C $(PURE)
	cd $(PURE) && KVCACHE_EXPECT_COMPILED=0 $(CURDIR)/$(BIN)/pytest tests/protocol tests/runtime \
		tests/kvcache

# The image, offline when need be (docker/build-image.sh: a Debian base from Debian's
# packages when python:3.11-slim-bookworm cannot be pulled), tagged kvcache:local.
image:
	docker/build-image.sh kvcache:local

# The image and compose file run for real (tests/deploy/test_containers.py).
test-containers: $(STAMP) image
	$(BIN)/pytest -m containers tests/deploy/test_containers.py -s

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) $(EXT_STAMP)
	$(BIN)/python -m loadtest.bench_protocol

# A test CA and server/client certificates for --tls-cert/--tls-key/--tls-ca, in certs/.
certs:
	sh docker/make-certs.sh certs

run: $(STAMP) $(EXT_STAMP)
	$(BIN)/python -m kvcache -p 11211 -l 127.0.0.1

# Load a running kvcache (`make run` in another shell). LOCUST_ARGS= gives the web UI on :8089.
LOCUST_HOST ?= 127.0.0.1:11211
LOCUST_ARGS ?= --headless -u 50 -r 10 -t 30s
locust: $(STAMP) $(EXT_STAMP)
	$(BIN)/locust -f loadtest/locustfile.py --host $(LOCUST_HOST) $(LOCUST_ARGS)

# README's web-frontend sweep (~10 min; writes results/webfrontend.{csv,png,md}).
# One point instead: make webfrontend WEBFRONTEND_ARGS='run --mode far --local 25'
WEBFRONTEND_ARGS ?= sweep --local 5,10,25,50,75,100 --modes far,paging
webfrontend: $(STAMP) $(EXT_STAMP)
	$(BIN)/python -m loadtest.webfrontend $(WEBFRONTEND_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
