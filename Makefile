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

# Seed demo traffic when the log is empty, then start the app on localhost:8501.
run: setup
	$(BIN)/sophia demo --if-empty
	$(BIN)/streamlit run app.py --server.address localhost --server.port 8501 --server.headless true

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
