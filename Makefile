# Two entry points for a fresh clone; each installs what it needs first.
#   make demo   generate hits, ingest them into ./var/, print the results
#               (`trackstore demo` then serves the dashboard too)
#   make test   run every test (doctests included) with zope.testrunner
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trackstore demo --no-serve

test: $(STAMP)
	$(BIN)/zope-testrunner --test-path=src -vc --all

clean:
	rm -rf $(VENV) var build *.egg-info src/*.egg-info
