# Every target creates or refreshes the virtual environment it needs (.venv) by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo screenshot test test-fast bytecode records lint bench bench-quick bench-cores bench-behaviour system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint,ray,pandas,sklearn,report,search]'
	touch $(STAMP)

venv: $(STAMP)

## demo: run the quickstart sweep (ridge regression, 8 configs x 3 repetitions), print the
## results table, write the HTML report and print its path
demo: $(STAMP)
	rm -rf results/quickstart
	$(VENV)/bin/dagrun execute workflows/quickstart.py --backend multiprocessing -j 2
	$(VENV)/bin/dagrun results results/quickstart --sort test_mse
	$(VENV)/bin/dagrun report results/quickstart

## screenshot: docs/img/report.png (the demo's report) and docs/img/report-sklearn-grid.png
## (workflows/sklearn_grid.py: 64 configs, 4 datasets x 3 models) as headless Chromium shows them
screenshot: demo system-deps
	mkdir -p docs/img
	rm -rf results/sklearn_grid
	$(VENV)/bin/dagrun execute workflows/sklearn_grid.py --backend multiprocessing -j 2 -q
	for shot in quickstart:report:2400 sklearn_grid:report-sklearn-grid:3300; do \
	  name=$${shot#*:}; \
	  rm -rf $(VENV)/chromium-profile; \
	  chromium --headless --no-sandbox --use-angle=swiftshader --enable-unsafe-swiftshader \
	    --no-first-run --hide-scrollbars \
	    --disable-background-networking --disable-component-update \
	    --user-data-dir=$(abspath $(VENV))/chromium-profile --virtual-time-budget=10000 \
	    --window-size=1280,$${name#*:} --screenshot=$(abspath docs/img)/$${name%%:*}.png \
	    file://$(abspath results)/$${shot%%:*}/report.html || exit 1; \
	done

## system-deps: Debian packages the service tests need (sshd, iproute2); root only
system-deps:
	bash scripts/install-system-deps.sh

## test: the linters (ruff, mypy), then the whole suite (the tests start sshd and a Ray head)
test: lint system-deps bytecode
	$(PY) -m pytest -q $(PYTEST_PARALLEL)

# Two test processes (pytest-xdist), each taking whole test files: most tests wait on
# processes, sleeps and services, so two halve the suite's time even on two cores. Every
# service fixture picks free ports and its own temp folders, so each process may start its
# own. PYTEST_PARALLEL= (empty) runs the suite in one process.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

# dagrun's bytecode, written once: the suite starts many Python processes that import
# dagrun, and where PYTHONDONTWRITEBYTECODE is set each would compile it again (~0.2 s)
bytecode: $(STAMP)
	$(PY) -m compileall -q -x '/fixtures/' dagrun tests

## test-fast: the suite without service tests (Ray, sshd, Slurm, Chromium) and chaos tests,
## for iteration (under 5 minutes); `make test` runs everything
test-fast: $(STAMP) bytecode
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "not service and not chaos"

## records: rewrite dagrun/record_inits.py (each record's __init__, compiled with the
## package) after adding or changing a record class; a test fails while it is stale
records: $(STAMP)
	$(PY) scripts/record_inits.py

## lint: ruff and mypy (strict) over the package and its tests; part of `make test`
lint: $(STAMP)
	$(VENV)/bin/ruff check dagrun tests bench workflows
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

## bench-cores: the many-core table: parallel efficiency (0.05 s and 0.25 s runs) and no-op
## dispatch of dagrun beside a multiprocessing.Pool at 1-16 workers (capped at the cores
## here), and a PyTorch check that each run sees exactly its GPU slot (< 8 minutes)
bench-cores: $(STAMP)
	$(PY) bench/cores.py

## bench-behaviour: dagrun, labtech and exca under kill -9, edits, failures, two drivers (~30 min)
bench-behaviour: $(STAMP)
	$(PY) bench/behaviour.py

clean:
	rm -rf $(VENV) results bench/out
