# Every target creates .venv itself when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
N ?=

.PHONY: demo test bench lint venv browser clean

$(BIN)/digest: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(BIN)/digest

venv: $(BIN)/digest

# Browser tests drive Debian's Chromium; install it when we may.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: apt-get install chromium" >&2; exit 1; fi; }

demo: venv
	$(BIN)/digest demo

test: venv browser
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check digest tests bench
	$(BIN)/ruff format --check digest tests bench
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m bench $(if $(N),--n $(N),)

clean:
	rm -rf $(VENV) demo/ build/ *.egg-info
