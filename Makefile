# Two commands for a fresh machine:
#   make demo   set up (Docker and the base image too), run the quickstart notebook, then promote, serve,
#               send shifted traffic and monitor its drift (scripts/demo.py)
#   make test   set up everything the tests need (system packages too), then run the whole suite

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed

.PHONY: demo test venv system docker base-image clean

demo: venv system base-image
	$(PY) scripts/run_notebook.py notebooks/01_quickstart.ipynb
	$(PY) scripts/demo.py

# Two workers, each module run whole by one of them (the groups in tests/conftest.py); the slowest tests are
# listed at the end, where the suite's time goes.
test: venv system base-image
	$(PY) -m pytest -n 2 --dist loadgroup --durations=25

# Python environment: the package (editable) with its test tools. Bytecode is
# compiled at install time, so imports stay fast where writing .pyc is disabled.
venv: $(STAMP)
$(STAMP): pyproject.toml extensions/mlflow-shipyard/pyproject.toml extensions/metaflow-shipyard/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --python $(PY) --compile-bytecode --quiet -e '.[dev]' -e extensions/mlflow-shipyard -e extensions/metaflow-shipyard
	touch $@

# System packages and services the tests use (apt when missing, as root).
system:
	bash scripts/setup-system.sh

docker:
	bash scripts/docker-up.sh

# The Debian + Python base image for model images, built locally (no registry);
# reused when it exists.
base-image: venv system
	$(VENV)/bin/shipyard base-image build --quiet

clean:
	rm -rf $(VENV) .shipyard .pytest_cache
