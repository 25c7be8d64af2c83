# One command each: `make quickstart` (sets up, then runs the quickstart) and `make test`.
# Setup is idempotent: .venv/.installed is rebuilt only when setup.cfg changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup test quickstart clean-venv

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=68,<82" wheel
	$(VENV)/bin/python -m pip install --quiet -e ".[dev,tracking]"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

quickstart: $(STAMP)
	$(VENV)/bin/gptfl run configs/quickstart.yaml --executor local

clean-venv:
	rm -rf $(VENV)
