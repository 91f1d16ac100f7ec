# The two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench docs clean install

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/goingdeeper train --overwrite

test: $(STAMP)
	command -v chromium || (apt-get update && apt-get install -y chromium)
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks) docs hubconf.py
	$(PY) -m pytest -n 2 --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks) docs hubconf.py
	$(VENV)/bin/ruff format --check src tests $(wildcard benchmarks) docs hubconf.py

format: $(STAMP)
	$(VENV)/bin/ruff format src tests $(wildcard benchmarks) docs hubconf.py
	$(VENV)/bin/ruff check --fix src tests $(wildcard benchmarks) docs hubconf.py

# The site, built afresh (every chapter runs) with warnings as errors, into docs/_build/html.
docs: $(STAMP)
	rm -rf docs/_build docs/generated
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) benchmarks/inference_bench.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache docs/_build docs/generated
