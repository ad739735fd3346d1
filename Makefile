# linkgate: `make run` serves on the embedded default (SQLite + in-process cache);
# `make test` runs the whole suite. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast bench chaos migrate readme lock clean

# The runtime dependencies install at the versions requirements.lock pins
# (the ones the image ships); the test tools at their newest that fit.
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "linkgate needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python -m service migrate

run: migrate
	$(BIN)/python -m service serve

# Two pytest workers (pytest-xdist): much of the suite waits on servers,
# stores and drills it starts, so two share a 2-core machine well.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: install
	$(BIN)/python -m pytest tests/unit tests/api -x -q

readme: install
	$(BIN)/python docs/sync_readme.py

# Pin the runtime dependencies (pyproject.toml's, and theirs) at the versions
# installed in .venv, i.e. the ones the tests just ran with. After changing a
# dependency: edit pyproject.toml, `pip install -U` it into .venv, `make test`,
# then `make lock`.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable > $(VENV)/tested-versions.txt
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--annotation-style=line -c $(VENV)/tested-versions.txt -o requirements.lock pyproject.toml

bench: install
	$(BIN)/python -m bench

# Fault drills under load, on stores they start themselves (README: "Fault drills").
chaos: install
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis linkgate.db linkgate.db-*
