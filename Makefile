# One entry point for every job; the README's two commands are `make study` and `make check`.
VENV := .venv
BIN := $(VENV)/bin
SERVICES = eval "$$(bash scripts/services.sh)"

.PHONY: setup study check lint typecheck test clean

setup:
	@bash scripts/setup.sh

study: setup
	$(BIN)/taskbench study

lint: setup
	$(BIN)/ruff check taskbench tests
	$(BIN)/ruff format --check taskbench tests

typecheck: setup
	$(BIN)/mypy

test: setup
	@bash scripts/system.sh
	@$(SERVICES); $(BIN)/python -m pytest

check: lint typecheck test

clean:
	rm -rf $(VENV) build reports .pytest_cache .mypy_cache .ruff_cache
