# The two commands a newcomer needs:
#   make demo   — install, then run the server on ./patron.db with the bakery demo loaded
#   make test   — install, then run the whole suite (SQLite, and PostgreSQL when reachable)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo serve test test-browser screenshots lint format install clean bench bench-quick client

$(BIN)/.installed: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e clients/python
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/patron serve --demo

serve: $(BIN)/.installed
	$(BIN)/patron serve

test: $(BIN)/.installed
	BIN=$(BIN) bash scripts/test.sh $(ARGS)

# The admin UI in a real browser (/usr/bin/chromium; `apt-get install chromium` if missing).
test-browser: $(BIN)/.installed
	BIN=$(BIN) bash scripts/test.sh tests/admin/browser $(ARGS)

# Refresh the screenshots in docs/admin/ (taken on SQLite; CJK text needs fonts-noto-cjk).
screenshots: $(BIN)/.installed
	PATRON_SCREENSHOTS=1 $(BIN)/pytest -q tests/admin/browser -k sqlite

# Every benchmark scenario at issue 5's sizes, each beside its same-run baseline, one JSON file
# (benchmarks/results/latest.json); needs PostgreSQL on 127.0.0.1:5432, pgbench and wrk. Long:
# most of it is generating the 10 M-row data sets and the report's first roll-up.
# Extra flags: make bench ARGS="--scenarios expiry,tiers --dbs postgresql,sqlite".
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run.py $(ARGS)

# The same scenarios at small sizes, for a quick look (benchmarks/results/quick.json).
bench-quick: $(BIN)/.installed
	$(BIN)/python benchmarks/run.py --duration 5 --batch-purchases 5000 --lots 200000 \
		--tier-members 20000 --tier-entries 200000 --report-entries 200000 \
		--json benchmarks/results/quick.json $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks clients/python scripts
	$(BIN)/ruff format --check src tests benchmarks clients/python scripts
	$(BIN)/mypy
	cd clients/python && ../../$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff format src tests benchmarks clients/python scripts
	$(BIN)/ruff check --fix src tests benchmarks clients/python scripts

# Regenerate the Python client (clients/python) from the app's OpenAPI; tests/client/test_drift.py
# fails until this is run after an API change.
client: $(BIN)/.installed
	$(BIN)/python scripts/gen_client.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
