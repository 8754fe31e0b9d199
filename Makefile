# The two commands a newcomer needs:
#   make demo   — install, then run the server on ./patron.db with the bakery demo loaded
#   make test   — install, then run the whole suite (SQLite, and PostgreSQL when reachable)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo serve test test-browser screenshots lint format install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
