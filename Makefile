# Two commands on a fresh machine: `make run` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

# pip's verbose log is long; show what is being fetched and the C++ build's [n/N] steps.
PIP_PROGRESS := awk '/^ *\[[0-9]+\/[0-9]+\] / { match($$0, /\[[0-9]+\/[0-9]+\]/); \
	printf "\r  compiling llama.cpp %s ", substr($$0, RSTART, RLENGTH); fflush(); next } \
	/^(Collecting|Building wheel|Successfully|ERROR|error:)/ { print; fflush() }'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	@echo "Installing requirements (the first build of llama-cpp-python takes about 5 minutes)..."
	@mkdir -p .run
	@$(BIN)/pip install -v -r requirements.txt 2>&1 | tee .run/pip.log | $(PIP_PROGRESS) \
		|| { echo; echo "pip failed: see .run/pip.log"; exit 1; }
	@touch $@

$(VENV)/.test-deps: requirements-dev.txt $(VENV)/.run-deps
	@$(BIN)/pip install -v -r requirements-dev.txt 2>&1 | tee .run/pip-dev.log | $(PIP_PROGRESS) \
		|| { echo; echo "pip failed: see .run/pip-dev.log"; exit 1; }
	@touch $@

.PHONY: run test lint format browser migrate
run: $(VENV)/.run-deps
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) ensure_login
	$(MANAGE) runchat $(ARGS)

migrate: $(VENV)/.run-deps
	$(MANAGE) migrate --noinput

# Debian's Chromium for the browser tests (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "Installing Debian's chromium and chromium-driver..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.test-deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(VENV)/.test-deps browser lint
	$(BIN)/python -m pytest
	node --test tests/js/
