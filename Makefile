# Everything runs in a local virtual environment (.venv); nothing is installed system-wide.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Seed demo traffic when the log is empty, then start the app on localhost:PORT (1024 to 65535,
# default 8501: make run PORT=8600). The URL is recorded beside the database, where
# `sophia serve` finds it for GET /dashboard.
PORT ?= 8501
run: setup
	@case "$(PORT)" in ''|*[!0-9]*) ok=0 ;; *) [ "$(PORT)" -ge 1024 ] && [ "$(PORT)" -le 65535 ] && ok=1 || ok=0 ;; esac; \
	if [ $$ok = 0 ]; then echo "make run: PORT=$(PORT) is not allowed: expected a port from 1024 to 65535 (default 8501)" >&2; exit 2; fi
	$(BIN)/sophia demo --if-empty
	$(BIN)/python -c 'import sys; from sophia.config.server import record_app_url; from sophia.log.db import default_path; record_app_url(default_path(), sys.argv[1])' http://localhost:$(PORT)
	$(BIN)/streamlit run app.py --server.address localhost --server.port $(PORT) --server.headless true

demo: setup
	$(BIN)/sophia demo

# Every test (browser and slow included) on every core; pytest -m 'not slow' for a quick run.
test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n auto

lint: setup
	$(BIN)/ruff check .

# Every benchmark runs and prints its figures; the exit status says whether any missed a target.
bench: setup
	@status=0; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || status=1; done; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
