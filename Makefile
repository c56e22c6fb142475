# quorum-registry developer commands. `make test` is what CI runs (through .ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed.stamp

.DEFAULT_GOAL := test
.PHONY: venv test run fmt gen clean

# (Re)install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@

venv: $(STAMP)

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n auto -m "not alone"
	$(BIN)/pytest -m alone

# The main job: a local 3-node cluster with the example workers (Ctrl-C stops it).
run: venv
	$(BIN)/registry dev --nodes 3

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

gen: venv
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache *.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
