# Every target creates or refreshes the virtual environment it needs (.venv) by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint bench bench-quick system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint,ray,pandas,sklearn]'
	touch $(STAMP)

venv: $(STAMP)

## demo: run the quickstart sweep (ridge regression, 8 configs x 3 repetitions) and print results
demo: $(STAMP)
	rm -rf results/quickstart
	$(VENV)/bin/dagrun execute workflows/quickstart.py --backend multiprocessing -j 2
	$(PY) -c "import sys; sys.path.insert(0, 'workflows'); import quickstart; quickstart.show_table('results/quickstart')"

## system-deps: Debian packages the service tests need (sshd, iproute2); root only
system-deps:
	bash scripts/install-system-deps.sh

## test: the whole suite (services such as sshd and a Ray head are started by the tests)
test: $(STAMP) system-deps
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check dagrun tests bench workflows
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) results bench/out
