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
NOTEBOOK_DIRS := notebooks solutions exercises
LAB_PORT ?= 8888

.PHONY: install data lab test test-newest test-unit test-notebooks test-execute exercises strip lint bench clean

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

test: $(DATA_STAMP)
	$(BIN)/python -m pytest tests $(NOTEBOOK_DIRS) $(NBVAL_FLAGS) $(PYTEST_ARGS)

# The same suite against the newest TensorFlow, Keras and JAX releases, in a venv of its own
# (pip installs the pinned set first, then upgrades the three over the pin and says so): what
# an instructor runs before moving the pin in pyproject.toml forward.
NEWEST_VENV ?= .venv-newest
test-newest:
	$(MAKE) install VENV=$(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --upgrade tensorflow keras jax
	$(NEWEST_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(tensorflow|keras|jax) '
	$(MAKE) test VENV=$(NEWEST_VENV)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/test_notebooks_execute.py $(PYTEST_ARGS)

test-notebooks: $(DATA_STAMP)
	$(BIN)/python -m pytest $(NOTEBOOK_DIRS) tests/test_notebooks_execute.py $(NBVAL_FLAGS) $(PYTEST_ARGS)

# Only the lessons through nbclient (as `jupyter nbconvert --execute` runs them), on TensorFlow and
# on JAX, with a per-cell timeout (`make test` runs this too, as part of tests/).
test-execute: $(DATA_STAMP)
	$(BIN)/python -m pytest tests/test_notebooks_execute.py $(PYTEST_ARGS)

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
