# Two commands on a fresh machine:  make run  |  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test typecheck bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo
	$(PY) manage.py ensure_admin
	$(PY) manage.py serve

test: typecheck
	$(PY) -m pytest

typecheck: $(VENV)/.installed
	$(VENV)/bin/ruff check --select F,E9 --exclude .venv .
	$(VENV)/bin/mypy gateway_project routing security performance authn monitoring dashboard federation demo

bench: $(VENV)/.installed
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
