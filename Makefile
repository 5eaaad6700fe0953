# IPMG Liaison: one command to run the system, one to test it. Nothing here needs Docker.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# uv from PyPI when missing; `python3 -m uv` works even where the scripts folder is not on PATH.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
LOCAL := deploy/local

.PHONY: help
help:
	@echo "make up        the whole system (Kafka, PostgreSQL, four services, sample history)"
	@echo "make down      stop everything 'make up' started"
	@echo "make logs      follow the services' logs"
	@echo "make test      install what is missing, start the servers, lint, type-check, test"
	@echo "make bench     the benchmarks (bench/README.md)"

.PHONY: uv
uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet --disable-pip-version-check uv

.PHONY: sync
sync: uv
	@$(UV) sync --frozen --quiet

.PHONY: up-infra
up-infra: sync
	@bash $(LOCAL)/infra.sh up
	@$(UV) run --frozen ipmg migrate
	@$(UV) run --frozen ipmg topics create

.PHONY: up
up: up-infra
	@bash $(LOCAL)/services.sh start
	@$(UV) run --frozen ipmg seed || echo "make up: the sample history is not loaded (see the line above)"
	@echo
	@echo "IPMG Liaison is up:"
	@echo "  dashboard      http://127.0.0.1:8004/"
	@echo "  meetings       http://127.0.0.1:8001/docs"
	@echo "  resolutions    http://127.0.0.1:8002/docs"
	@echo "  notifications  http://127.0.0.1:8003/docs"
	@echo "  reporting      http://127.0.0.1:8004/docs"
	@echo "  logs           make logs   (files in $${IPMG_STATE_DIR:-$$HOME/.local/state/ipmg}/run)"

.PHONY: down
down:
	@bash $(LOCAL)/services.sh stop
	@bash $(LOCAL)/infra.sh down

.PHONY: down-infra
down-infra:
	@bash $(LOCAL)/infra.sh down

.PHONY: status
status:
	@bash $(LOCAL)/services.sh status
	@bash $(LOCAL)/infra.sh status

.PHONY: logs
logs:
	@tail -n 50 -F "$${IPMG_STATE_DIR:-$$HOME/.local/state/ipmg}"/run/*.log

.PHONY: lint
lint: sync
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy

.PHONY: test
test: up-infra lint
	@$(UV) run --frozen pytest

.PHONY: bench
bench: up-infra
	@$(UV) run --frozen python -m bench
