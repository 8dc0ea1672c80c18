# `make demo` and `make test` create .venv when missing and install nftkit into it first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nftkit-installed
DEMO_DIR ?= demo-out
PYTEST_ARGS ?=

.PHONY: venv demo test test-all lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing nftkit and its dependencies into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,postgres]' 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nftkit demo --output $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check nftkit tests benchmarks examples
	$(VENV)/bin/ruff format --check nftkit tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/shapes_nft.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache nftkit.db nftkit.db-wal nftkit.db-shm
