# `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install bench

# JavaScript clients the suite runs against a live server (the guide's example needs the `ws` package).
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --silent --no-audit --no-fund
	touch $@

# Debian's Chromium, driven by Playwright in tests/test_web_client.py (Playwright's own browser download is not
# used). Without it (no root, no apt) that test skips on a laptop and fails under CI=true.
/usr/bin/chromium:
	-apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python cli.py serve --demo

test: install tests/js/node_modules/.installed /usr/bin/chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The benchmark (~10 minutes): writes bench/results/ (report.md, report.json, latency.png).
bench: install
	$(BIN)/python -m bench
