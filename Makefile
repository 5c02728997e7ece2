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
export MPLBACKEND := Agg

.PHONY: help setup test test-fast reproduce rehearsal-data lint lab data notebooks clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|embedded|paper|paper_rehearsal (default embedded)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt
	$(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the pinned requirements (idempotent)

test: $(STAMP)  ## run the whole test suite: unit tests + every notebook (nbval-lax)
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax -p no:randomly notebooks

test-fast: $(STAMP)  ## unit tests only, without the slow ones
	$(PY) -m pytest -q -m "not slow" tests

# paper_rehearsal reads generated copies of the paper's datasets: write them first (a no-op when
# data/rehearsal/REHEARSAL.json already matches).
reproduce: $(STAMP) $(if $(filter paper_rehearsal,$(PROFILE)),rehearsal-data)  ## run the whole pipeline for PROFILE (default embedded)
	$(PY) -m contextclip reproduce --profile $(PROFILE)

rehearsal-data: $(STAMP)  ## write the paper_rehearsal fixtures (format-exact copies of the paper's datasets) to data/rehearsal
	$(PY) -m contextclip data make-rehearsal --root data/rehearsal

data: $(STAMP)  ## prepare the datasets of PROFILE (prints what to download where needed)
	$(PY) -m contextclip data prepare-profile --profile $(PROFILE)

lint: $(STAMP)  ## ruff on the package, tests, benchmarks, tools and the notebooks' .py sources
	$(VENV)/bin/ruff check contextclip tests benchmarks tools notebooks

notebooks: $(STAMP)  ## sync each notebook with its jupytext .py (newer side wins) and strip outputs
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace --log-level=WARN notebooks/[0-9][0-9]_*.ipynb

lab: $(STAMP)  ## JupyterLab on notebooks/ with the kit's kernel (localhost, token on)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

clean:  ## remove generated runs (keeps data/ caches and .venv)
	rm -rf runs
