# Two commands matter: `make run` (the main job) and `make test` (every test).
# Both create .venv and install what they need on a fresh machine.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint zookeeper chromium bench clean

$(STAMP): pyproject.toml scripts/install_http_parser.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	bash scripts/install_http_parser.sh $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/mantis up --example

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy core service common mesoslite runtime adapters
	$(VENV)/bin/lint-imports

# The integration tests run a real ZooKeeper (tests/zookeeper.py): the Debian package.
zookeeper:
	bash scripts/install_zookeeper.sh

# The dashboard's browser tests drive headless Chromium: the Debian packages.
chromium:
	bash scripts/install_chromium.sh

test: lint zookeeper chromium
	$(PY) -m pytest

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/control_plane.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
