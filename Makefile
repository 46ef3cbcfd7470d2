# The two commands a new machine needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: setup run test lint typecheck unit bench clean browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "clawgate needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## Start the gateway (SQLite in $$CLAWGATE_HOME, default ~/.clawgate); it prints the web chat
## link. `clawgate chat` in another terminal talks to it.
run: $(STAMP)
	$(BIN)/clawgate gateway

## Everything CI checks: lint, types, and every test (installs Chromium for the web chat tests).
test: lint typecheck browser
	$(BIN)/pytest

## Debian's Chromium, which the web chat tests drive (Playwright never downloads a browser).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the web chat tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "WARNING: $(CHROMIUM) is missing and cannot be installed here (needs root and apt):" \
	         "the web chat tests will be SKIPPED (and fail under CI=true)" >&2; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/conformance

bench: $(STAMP)
	$(BIN)/python bench/turns.py
	$(BIN)/python bench/providers.py
	$(BIN)/python bench/gateway_load.py
	$(BIN)/python bench/gateway_quiet.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
