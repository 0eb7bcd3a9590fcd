# otids: `make run` analyses a bundled sample capture; `make test` runs the whole test suite.
# Each target sets up what it needs first (system packages, .venv, the package with extras).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.otids-installed
SAMPLE ?= pcaps/modbus-attack.pcap

.PHONY: setup run test lint bench pcaps clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup-system.sh
	@scripts/setup-system.sh
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(VENV)/bin/otids read $(SAMPLE)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check otids tests scripts bench
	$(VENV)/bin/ruff format --check otids tests scripts bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

pcaps: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH scripts/pcaps/make_all.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/out
