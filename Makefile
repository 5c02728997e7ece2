# ContextCLIP reproduction kit. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PROFILE ?= embedded
export PYTHONHASHSEED := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# The headless matplotlib backend for batch runs and tests only (not `make lab`: its kernel
# draws inline, so a student's plt.show() displays).
BATCH := MPLBACKEND=Agg

.PHONY: help setup test test-fast reproduce rehearsal-data lint lab data notebooks clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|embedded|paper|paper_rehearsal (default embedded)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt
	$(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(PY) -m contextclip.lab --install-kernel
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the pinned requirements (idempotent)

# Tests run in one worker process per CPU core (pytest-xdist), each test file in one worker so that
# a file's shared fixtures are built once. Beside them, in one more process, the notebooks run in
# order (03-07 read the smoke runs 02 trains; a notebook's kernel mostly keeps one core busy), then
# the JupyterLab browser test, which opens notebook 06 on those same runs. Their output is shown
# after the unit tests'; the target fails when either fails.
NB_LOG := runs/make-test-notebooks.log
test: $(STAMP)  ## run the whole test suite: unit tests + every notebook (nbval-lax) + the browser test
	@mkdir -p $(dir $(NB_LOG)); \
	{ $(BATCH) $(PY) -m pytest -q --nbval-lax notebooks && \
	  $(BATCH) $(PY) -m pytest -q tests/test_browser.py; } > $(NB_LOG) 2>&1 & nb=$$!; \
	$(BATCH) $(PY) -m pytest -q -n auto --dist loadfile --ignore=tests/test_browser.py tests; unit=$$?; \
	wait $$nb; nbrc=$$?; \
	echo "--- notebooks, then the browser test (run beside the unit tests; $(NB_LOG)) ---"; cat $(NB_LOG); \
	if [ $$unit -ne 0 ] || [ $$nbrc -ne 0 ]; then echo "make test: unit tests exit $$unit, notebooks + browser exit $$nbrc" >&2; exit 1; fi

test-fast: $(STAMP)  ## unit tests only, without the slow ones
	$(BATCH) $(PY) -m pytest -q -n auto --dist loadfile -m "not slow" tests

# paper_rehearsal reads generated copies of the paper's datasets: write them first (a no-op when
# data/rehearsal/REHEARSAL.json already matches).
reproduce: $(STAMP) $(if $(filter paper_rehearsal,$(PROFILE)),rehearsal-data)  ## run the whole pipeline for PROFILE (default embedded)
	$(BATCH) $(PY) -m contextclip reproduce --profile $(PROFILE)

rehearsal-data: $(STAMP)  ## write the paper_rehearsal fixtures (format-exact copies of the paper's datasets) to data/rehearsal
	$(PY) -m contextclip data make-rehearsal --root data/rehearsal

data: $(STAMP)  ## prepare the datasets of PROFILE (prints what to download where needed)
	$(PY) -m contextclip data prepare-profile --profile $(PROFILE)

lint: $(STAMP)  ## ruff on the package, tests, benchmarks, tools and the notebooks' .py sources
	$(VENV)/bin/ruff check contextclip tests benchmarks tools notebooks

notebooks: $(STAMP)  ## sync each notebook (and solution) with its jupytext .py (newer side wins) and strip outputs
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb notebooks/solutions/*.ipynb
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace --log-level=WARN notebooks/[0-9][0-9]_*.ipynb notebooks/solutions/*.ipynb

lab: $(STAMP)  ## JupyterLab at the repository root with the kit's kernel (127.0.0.1, token on, inline figures)
	$(PY) -m contextclip.lab

clean:  ## remove generated runs (keeps data/ caches and .venv)
	rm -rf runs
