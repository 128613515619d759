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

# The relay benchmark's own packages (the reference relay's FastAPI and uvicorn) and httpx for its set-up.
$(VENV)/.bench-deps: requirements-bench.txt $(VENV)/.run-deps
	@mkdir -p .run
	@$(BIN)/pip install -v -r requirements-bench.txt 2>&1 | tee .run/pip-bench.log | $(PIP_PROGRESS) \
		|| { echo; echo "pip failed: see .run/pip-bench.log"; exit 1; }
	@touch $@

.PHONY: run cluster test lint format browser nginx migrate bench bench-profile
run: $(VENV)/.run-deps
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) ensure_login
	$(MANAGE) runchat $(ARGS)

# Several daphne workers behind nginx, with PostgreSQL and Redis (see README): an extra, not a set-up step.
cluster: $(VENV)/.run-deps nginx
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) runcluster $(ARGS)

# Side by side: the upstream direct, a minimal FastAPI relay, chatsite in one process and as two
# workers behind nginx (PostgreSQL and Redis as for the tests). About 5 minutes on 2 cores; never
# part of `make test`. ARGS="--quick" for fewer points; docs/benchmark.md tells what it measures.
bench: $(VENV)/.bench-deps nginx
	$(BIN)/python -m bench.relay $(ARGS)
	$(BIN)/python -m bench.profile $(PROFILE_ARGS)

bench-profile: $(VENV)/.bench-deps
	$(BIN)/python -m bench.profile $(PROFILE_ARGS)

migrate: $(VENV)/.run-deps
	$(MANAGE) migrate --noinput

# Debian's Chromium for the browser tests (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "Installing Debian's chromium and chromium-driver..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Debian's nginx for `make cluster` and the multi-process tests, which run it as their own
# foreground process. The package would start a system nginx on port 80 (and fail the install
# where that cannot start): a policy-rc.d saying "no" (exit 101) for the length of the install
# keeps it from starting anything. One already there (containers ship one) is left alone, and
# a system nginx that started all the same is stopped.
nginx:
	@if ! command -v nginx >/dev/null && ! test -x /usr/sbin/nginx; then \
		echo "Installing Debian's nginx..."; \
		if ! test -e /usr/sbin/policy-rc.d; then \
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; \
			chmod 755 /usr/sbin/policy-rc.d; \
		fi; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
		/usr/sbin/nginx -s quit 2>/dev/null || true; \
	fi

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.test-deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(VENV)/.test-deps browser nginx lint
	$(BIN)/python -m pytest
	node --test tests/js/
