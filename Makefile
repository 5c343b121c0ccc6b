# Two commands on a fresh machine (README):
#   make lab    set up (venv, package, synthetic data when none is there) and open JupyterLab
#   make test   set up the same way, then run the unit tests and every notebook with nbval
#
# Only Python 3.10-3.13 with venv is needed. A second run reinstalls nothing unless
# pyproject.toml changed (the stamp file below records the last install).

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.course-installed
DATA_STAMP := data/.prepared
export COURSE_MODE ?= quick
# TensorFlow's C++ start-up log lines are silenced by course_lib itself (course_lib/__init__.py),
# stricter on machines without an NVIDIA driver; set TF_CPP_MIN_LOG_LEVEL yourself to override.
export PYTHONHASHSEED ?= 0
# Keep JupyterLab and nbval kernels from touching the user's global config.
export JUPYTER_PLATFORM_DIRS ?= 1
# nbval: a generous per-cell limit (the notebook budget is 90 s; this only catches hangs)
NBVAL_FLAGS := --nbval-lax --nbval-cell-timeout=300 --nbval-sanitize-with tests/nbval_sanitize.cfg
LAB_PORT ?= 8888

.PHONY: install data lab test test-fast test-newest test-unit test-notebooks test-execute nbval exercises strip lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Synthetic look-alikes when no dataset is there (real data under data/ or $COURSE_DATA wins).
$(DATA_STAMP): $(STAMP)
	$(BIN)/python -m course_lib.data.prepare
	@mkdir -p data && touch $(DATA_STAMP)

data: $(DATA_STAMP)

# Jupyter refuses to start as root unless told; containers and cloud VMs often run as root.
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

# Serve the repository root (so notebooks/, exercises/ and solutions/ are all in the file browser
# and the notebooks' relative links work) and open 00_start_here in it.
lab: $(DATA_STAMP)
	$(BIN)/jupyter lab --port=$(LAB_PORT) $(LAB_FLAGS) --ServerApp.root_dir="$(CURDIR)" \
		notebooks/00_start_here.ipynb

# Every test once: tests/ (the lessons through nbclient, each executed once on TensorFlow with its
# NBVAL_CHECK_OUTPUT cells compared, two again on JAX) and nbval over solutions/ and exercises/.
# Two pytest-xdist workers, a whole file per worker (--dist loadfile): nbval runs a notebook's
# cells in order in one kernel, so they must stay together. The lessons' file is named first so
# that one worker starts on it (the longest file) while the other takes everything else.
# (Not --dist loadgroup: with pytest 9.2 it silently stops grouping, pytest-xdist issue 1386.)
# README "Tests and benchmarks" has the measured times; XDIST= runs it in one process.
XDIST ?= -n 2 --dist loadfile
LESSONS_TEST := tests/test_notebooks_execute.py
test: $(DATA_STAMP)
	$(BIN)/python -m pytest $(LESSONS_TEST) tests solutions exercises $(NBVAL_FLAGS) $(XDIST) \
		$(PYTEST_ARGS)

# The edit-test loop for people changing course_lib: the unit tests that execute no notebook,
# start no second Keras backend, open no browser and are not marked slow (the handful of
# model-level tests over ~5 s each: XLA compile, one-batch overfit, end-to-end command line).
FAST_MARKERS := not notebook and not other_backend and not browser and not slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "$(FAST_MARKERS)" $(XDIST) $(PYTEST_ARGS)

# The same suite against the newest TensorFlow, Keras and JAX releases, in a venv of its own
# (pip installs the pinned set first, then upgrades the three over the pin and says so): what
# an instructor runs before moving the pin in pyproject.toml forward.
NEWEST_VENV ?= .venv-newest
test-newest:
	$(MAKE) install VENV=$(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --upgrade tensorflow keras jax
	$(NEWEST_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(tensorflow|keras|jax) '
	$(MAKE) test VENV=$(NEWEST_VENV)

# Everything but the notebooks (what .ci/run repeats on the newest Python).
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests -m "not notebook" $(XDIST) $(PYTEST_ARGS)

# Only the notebooks: the lessons through nbclient, solutions/ and exercises/ through nbval.
test-notebooks: $(DATA_STAMP)
	$(BIN)/python -m pytest $(LESSONS_TEST) solutions exercises $(NBVAL_FLAGS) $(XDIST) \
		$(PYTEST_ARGS)

# Only the lessons through nbclient (as `jupyter nbconvert --execute` runs them), with a per-cell
# timeout and their NBVAL_CHECK_OUTPUT cells compared (`make test` runs this too).
test-execute: $(DATA_STAMP)
	$(BIN)/python -m pytest $(LESSONS_TEST) $(PYTEST_ARGS)

# The lessons under nbval, as an instructor's CI may run them (`make test` checks the same cells
# inside its nbclient run, so it does not execute the lessons a second time this way).
nbval: $(DATA_STAMP)
	$(BIN)/python -m pytest notebooks $(NBVAL_FLAGS) $(PYTEST_ARGS)

# Regenerate exercises/ from solutions/ (tests fail when exercises/ is stale).
exercises: $(STAMP)
	$(BIN)/python tools/nbtool.py exercises

# Clear notebook outputs except the cells marked NBVAL_CHECK_OUTPUT.
strip: $(STAMP)
	$(BIN)/python tools/nbtool.py strip

lint: $(STAMP)
	$(BIN)/python tools/nbtool.py lint
	$(BIN)/ruff check course_lib tests tools bench

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data/synthetic $(DATA_STAMP) .pytest_cache test-artifacts
