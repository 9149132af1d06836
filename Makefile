# The two commands every new user and CI rely on: `make demo` and `make test`.
# Works on a fresh Debian machine with Python 3.11, make and apt: missing system packages
# (python3-venv, libgomp1) are installed with apt-get when absent.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_HOME ?= $(CURDIR)/demo-home
SHARED_DATA := $(abspath ../shared/data)
POSTGRES_CLUSTER := tests/postgres/cluster.sh

# Real data sets for the data tests: found next to the checkout unless set by the caller.
ifeq ($(origin FUNNELCAST_DATA_DIR), undefined)
ifneq ($(wildcard $(SHARED_DATA)),)
export FUNNELCAST_DATA_DIR := $(SHARED_DATA)
endif
endif
export MLFLOW_DISABLE_TELEMETRY := true

APT_GET = $(if $(filter 0,$(shell id -u)),,sudo) apt-get

.PHONY: demo test lint typecheck pytest install system-deps browser-deps lock clean mlflow-ui \
	pytest-postgres postgres-start postgres-stop

demo: $(STAMP)
	FUNNELCAST_HOME=$(DEMO_HOME) $(BIN)/funnelcast demo $(DEMO_ARGS)

test: $(STAMP) lint typecheck pytest

mlflow-ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --host 127.0.0.1 --port 5000 \
		--workers 1 --backend-store-uri sqlite:///$(DEMO_HOME)/mlflow.db

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs once, on SQLite and (its store, goals, keys and API tests, marked `postgres`)
# on a throwaway PostgreSQL cluster that is stopped afterwards, pass or fail.
pytest: $(STAMP) browser-deps
	bash $(POSTGRES_CLUSTER) run -- $(BIN)/pytest --durations=15

# The PostgreSQL pass alone.
pytest-postgres: $(STAMP)
	bash $(POSTGRES_CLUSTER) run -- $(BIN)/pytest -m postgres --durations=10

# A cluster to run tests against by hand: eval "$$(make -s postgres-start)"; ...; make postgres-stop
postgres-start:
	@bash $(POSTGRES_CLUSTER) start

postgres-stop:
	@bash $(POSTGRES_CLUSTER) stop

install: $(STAMP)

system-deps:
	@if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "installing python3-venv"; \
		$(APT_GET) update -qq && $(APT_GET) install -y -qq python3-venv; \
	fi
	@if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1'; then \
		echo "installing libgomp1 (OpenMP runtime used by LightGBM and scikit-learn)"; \
		$(APT_GET) update -qq && $(APT_GET) install -y -qq libgomp1; \
	fi

# The dashboard's browser tests drive Debian's chromium through Playwright (never
# `playwright install`, which downloads a browser of its own).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing chromium (headless browser for the dashboard tests)"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium; \
	fi

$(BIN)/python: | system-deps
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=24'
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Refresh constraints.txt after changing dependencies in pyproject.toml.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^pip==' > constraints.txt

clean:
	rm -rf $(VENV) $(DEMO_HOME) .mypy_cache .ruff_cache .pytest_cache
