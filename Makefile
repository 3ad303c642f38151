# `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Where `make run` serves (`make run PORT=8001 HOST=0.0.0.0`); an exported PORT is read too, as the CLI's
# commands that call the server (`cli.py notify`) do.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install bench

# JavaScript clients the suite runs against a live server (the guide's example needs the `ws` package).
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --silent --no-audit --no-fund
	touch $@

# Debian's Chromium, driven by Playwright in tests/test_web_client.py (Playwright's own browser download is not
# used). Without it (no root, no apt) that test skips on a laptop and fails under CI=true.
/usr/bin/chromium:
	-apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per requirements file: `make run` installs the runtime only (serving and the command line);
# `make test` and `make bench` add the development tools. Editing a file installs it again.
$(VENV)/.installed-runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed-runtime

run: install
	$(BIN)/python cli.py serve --demo --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev tests/js/node_modules/.installed /usr/bin/chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The benchmark (~15 minutes): writes bench/results/ (report.md, report.json, latency.png).
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench
