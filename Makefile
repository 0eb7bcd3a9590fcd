# otids: `make run` analyses a bundled sample capture; `make test` runs the whole test suite.
# Each target sets up what it needs first (system packages, .venv, the package with extras).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.otids-installed
SAMPLE ?= pcaps/modbus-attack.pcap

.PHONY: setup run test lint bench bench-live bench-flood fuzz pcaps conformance clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py otids/capture/_fastpcap.c scripts/setup-system.sh
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
	$(VENV)/bin/ruff check otids tests scripts bench fuzz
	$(VENV)/bin/ruff format --check otids tests scripts bench fuzz
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

# Floods against the memory bounds: peak RSS of `otids read` against packets (bench/out/).
bench-flood: $(STAMP)
	$(PY) bench/flood.py

# Every fuzz target for FUZZ_SECONDS each (atheris when installed: pip install -e '.[fuzz]');
# inputs that raise or run over 10 ms are kept in tests/fuzz/regressions/.
FUZZ_SECONDS ?= 60
FUZZ_ENGINE ?= auto
fuzz: $(STAMP)
	$(PY) -m fuzz.run --seconds $(FUZZ_SECONDS) --engine $(FUZZ_ENGINE)

# Live capture under load (root: network namespaces, tcpreplay); not part of `make test`.
bench-live: $(STAMP)
	$(PY) bench/live.py

# suricata-verify's Modbus/DNP3 alert checks with otids' Suricata rule support (needs
# ../shared/corpus): a table of test, sid, expected, got, pass.
conformance: $(STAMP)
	$(PY) scripts/conformance.py

pcaps: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH scripts/pcaps/make_all.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/out otids/capture/*.so
