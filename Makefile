# Every target creates .venv itself when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
N ?=

.PHONY: demo test bench bench-1m lint venv system clean

# Two installs into the one .venv: what digest itself needs (the demo), and that plus the
# test and dev tools (tests, lint, bench). Each is redone when pyproject.toml changes.
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed-dev

# Browser tests drive Debian's Chromium; the store tests also run against a throwaway
# PostgreSQL 15 server; the bounce tests read an IMAP folder on a throwaway Dovecot. Install what is missing when we may (root), else say what to install.
SYSTEM_PKGS = $(if $(shell command -v chromium),,chromium) \
	$(if $(wildcard /usr/lib/postgresql/15/bin/initdb),,postgresql-15) \
	$(if $(wildcard /usr/sbin/dovecot),,dovecot-imapd)
system:
	@if [ -n "$(strip $(SYSTEM_PKGS))" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PKGS) >/dev/null; \
	  else echo "missing system packages: apt-get install $(SYSTEM_PKGS)" >&2; exit 1; fi; fi

demo: $(VENV)/.installed
	$(BIN)/digest demo

test: venv system
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check digest tests bench
	$(BIN)/ruff format --check digest tests bench
	$(BIN)/mypy

bench: venv system
	$(BIN)/python -m bench $(if $(N),--n $(N) --out bench/out/results-$(N).json,)
	$(BIN)/python -m bench.workers $(if $(N),--out bench/out/results-workers.json,)

# The issue's target 2: one issue to 1,000,000 subscribers (about 25 minutes; N=20000 for a quick look).
bench-1m: venv system
	$(BIN)/python -m bench.million $(if $(N),--n $(N),)

clean:
	rm -rf $(VENV) demo/ build/ *.egg-info
