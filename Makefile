# Two entry points for a fresh machine: `make run` (main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench

bench: $(STAMP)
	$(PY) experiments/bench_sim.py --out experiments/results/bench_sim.md
	$(PY) experiments/bench_adapt.py --out experiments/results/bench_adapt.md

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev,ray,gpu]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/metarobot run experiments/configs/quickstart.toml --workers 2

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
