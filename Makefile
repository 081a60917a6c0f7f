# wmbook: `make book` sets everything up and builds the site; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?=
# SEEDS="0 1 2" make book runs every notebook for each seed (the runner reads $$SEEDS; default 0).
# Offline data: ../shared/data when it exists (override with WMLIB_DATA=...); unset = download.
ifneq ($(wildcard ../shared/data),)
export WMLIB_DATA ?= $(abspath ../shared/data)
endif
MATHJAX := build/mathjax/mathjax/tex-chtml.js
# every core and one worker more (pytest-xdist; tests/conftest.py keeps a notebook's cells and the smoke
# site on one worker): a worker waiting on a kernel's start, a job's process or the other workers'
# notebooks leaves its core to the others (2 cores: 10.7 min with three workers, 12.6 with two)
WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
PYTEST_FLAGS ?= -n $(WORKERS) --dist loadscope --no-loadscope-reorder --durations=30

.PHONY: setup notebooks book test smoke-book clean
setup: $(BIN)/.installed $(MATHJAX)

# uv installs the same pins as pip about four times faster (29 s against 2 min on two cores: torch
# is a 5 GB CUDA build). It is given pip's own extra indexes and find-links (where a machine keeps
# wheels on disk) and pip's rule of taking the best version across them; pip is the fallback.
PIP_EXTRA_INDEX := $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)
PIP_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_FLAGS := --index-strategy unsafe-best-match $(foreach u,$(PIP_EXTRA_INDEX),--extra-index-url $(u)) \
  $(foreach f,$(PIP_LINKS),--find-links $(f))

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	($(BIN)/pip install -q uv && $(BIN)/uv pip install -q --python $(BIN)/python $(UV_FLAGS) -e .) \
	  || $(BIN)/pip install -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"
	touch $@

# MathJax shipped with the site, so math renders offline (npm registry, once).
$(MATHJAX):
	mkdir -p build/mathjax
	cd build/mathjax && npm pack --silent mathjax@3 >/dev/null && tar xzf mathjax-3*.tgz \
	  && rm -rf mathjax && mv package/es5 mathjax && rm -rf package mathjax-3*.tgz

notebooks: setup
	$(BIN)/python -m wmlib.runner run $(if $(PROFILE),--profile $(PROFILE))

book: notebooks
	$(BIN)/python -m wmlib.runner plan --profile paper --markdown build/executed/plan-paper.md >/dev/null
	$(BIN)/python -m wmlib.runner book

test: setup
	$(BIN)/python -m wmlib.runner smoke --out build/smoke
	$(BIN)/python -m pytest tests build/smoke --nbval-lax --nbval-current-env $(PYTEST_FLAGS) $(PYTEST_EXTRA)

clean:
	rm -rf _build build/smoke build/executed
