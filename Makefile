# p4lb: `make demo` and `make test` do all set-up on a fresh machine (system packages need root).
SHELL := /bin/bash
PYTHON_SYS ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
# p4runtime-shell (the interop test's independent P4Runtime client) pins protobuf<3.21 and
# p4runtime 1.4.1, which cannot share .venv: it gets a venv of its own.
P4SH_VENV := .venv-p4sh
# Debian packages: Mininet and friends for the real-network tier and the demo (iperf3: the
# affinity e2e test; prometheus: the scrape test, which starts its own server on loopback).
SYSTEM_PACKAGES := mininet bridge-utils iproute2 ethtool iputils-ping psmisc iperf3 prometheus \
	python3-venv python3-dev

.PHONY: setup p4sh test lint typecheck unit demo docs-picture bench clean

setup: $(VENV)/.installed

$(VENV)/.system-deps:
	@mkdir -p $(VENV)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(SYSTEM_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root: system packages not installed (the Mininet tier will skip)"; fi
	@touch $@

$(BIN)/python: | $(VENV)/.system-deps
	$(PYTHON_SYS) -m venv --system-site-packages $(VENV)

$(VENV)/.installed: $(VENV)/.system-deps $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

p4sh: $(P4SH_VENV)/.installed

$(P4SH_VENV)/.installed:
	$(PYTHON_SYS) -m venv $(P4SH_VENV)
	$(P4SH_VENV)/bin/python -m pip install -q p4runtime-shell==0.0.6
	@touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

test: lint typecheck p4sh
	$(BIN)/pytest

demo: setup
	$(BIN)/p4lb-demo --out demo-out

# Refresh the README's picture from a demo run (make demo itself changes no tracked file).
docs-picture: demo
	@mkdir -p docs && cp demo-out/loads.png docs/demo-loads.png

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(P4SH_VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache demo-out
