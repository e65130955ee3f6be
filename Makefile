# spevidence — two commands on a fresh machine with Python 3.11 and make:
#   make demo   set up .venv from the lock files, run the example evaluation end to end
#   make test   set up .venv from the lock files, run the whole test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
UV_VERSION := 0.13.8
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck check lock clean bench

install: $(STAMP)

$(STAMP): requirements/dev.txt requirements/bootstrap.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed: install it or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	@# poppler-utils (pdftoppm, pdftotext): the tests look at the rendered PDF pages
	@command -v pdftoppm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null) \
	      || echo "warning: could not install poppler-utils; the PDF page tests will fail"; \
	  else echo "warning: install poppler-utils (pdftoppm) for the PDF page tests"; fi; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/bootstrap.txt
	@# bytecode compiled once here: where PYTHONDONTWRITEBYTECODE=1 is set, Python would
	@# otherwise compile every module it imports on each start (about 1.4 s of a 2.5-3 s
	@# `spevidence --help` measured under load; benchmarks/notes/first_call_latency_2026-12.md)
	$(UV) pip sync --python $(PY) --quiet --compile-bytecode requirements/dev.txt
	$(UV) pip install --python $(PY) --quiet --no-deps --no-build-isolation -e .
	$(PY) -m compileall -q spevidence
	@touch $(STAMP)

demo: install
	$(VENV)/bin/spevidence demo --out out/demo

test: install
	$(PY) -m pytest -n 2 --dist loadgroup

lint: install
	$(VENV)/bin/ruff check spevidence tests benchmarks
	$(VENV)/bin/ruff format --check spevidence tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

# Regenerate the hash-pinned lock files (no download URLs are recorded in them).
lock: install
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header -q -o requirements/runtime.txt
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header -q --extra spark --group dev --group peers -o requirements/dev.txt

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
