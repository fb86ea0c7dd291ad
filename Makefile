# Two entry points for a fresh machine: `make run` (main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench docs

bench: $(STAMP)
	$(PY) experiments/bench_sim.py --out experiments/results/bench_sim.md
	$(PY) experiments/bench_adapt.py --out experiments/results/bench_adapt.md

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev,ray,gpu,docs]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/metarobot run experiments/configs/quickstart.toml --workers 2

test: $(STAMP)
	$(PY) -m ruff check .
	$(MAKE) docs
	$(PY) -m pytest -q

# The documentation site, into site/ (git-ignored): no network, GPU or training needed.
# NO_MKDOCS_2_WARNING silences mkdocs-material's end-of-life banner.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(PY) -m ruff check .
