# IPMG Liaison: one command to run the system, one to test it. Nothing here needs Docker.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# uv from PyPI when missing; `python3 -m uv` works even where the scripts folder is not on PATH.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
LOCAL := deploy/local
# Everything `make` starts is a development system, on the public development secrets;
# outside this mode (the compose file never sets it) the services refuse those secrets.
export IPMG_ENVIRONMENT ?= development

.PHONY: help
help:
	@echo "make up        the whole system (Kafka, PostgreSQL, four services, sample history)"
	@echo "make down      stop everything 'make up' started"
	@echo "make logs      follow the services' logs"
	@echo "make test      install what is missing, start the servers, lint, type-check, test"
	@echo "make bench     the benchmarks (bench/README.md)"
	@echo "make audit-deps  known vulnerabilities in the locked dependencies (pip-audit)"

.PHONY: uv
uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet --disable-pip-version-check uv

.PHONY: sync
sync: uv
	@$(UV) sync --frozen --all-groups --quiet

.PHONY: up-infra
up-infra: sync
	@bash $(LOCAL)/infra.sh up
	@$(UV) run --frozen ipmg migrate
	@$(UV) run --frozen ipmg topics create

MEETINGS_URL := http://127.0.0.1:$${IPMG_MEETINGS_PORT:-8001}
RESOLUTIONS_URL := http://127.0.0.1:$${IPMG_RESOLUTIONS_PORT:-8002}
NOTIFICATIONS_URL := http://127.0.0.1:$${IPMG_NOTIFICATIONS_PORT:-8003}
REPORTING_URL := http://127.0.0.1:$${IPMG_REPORTING_PORT:-8004}

.PHONY: up
up: up-infra
	@$(UV) run --frozen ipmg audit keys generate --missing-only
	@bash $(LOCAL)/services.sh start
	@$(UV) run --frozen ipmg seed --meetings-url "$(MEETINGS_URL)" --resolutions-url "$(RESOLUTIONS_URL)"
	@echo
	@echo "IPMG Liaison is up:"
	@echo "  dashboard      $(REPORTING_URL)/"
	@echo "  meetings       $(MEETINGS_URL)/docs"
	@echo "  resolutions    $(RESOLUTIONS_URL)/docs"
	@echo "  notifications  $(NOTIFICATIONS_URL)/docs"
	@echo "  reporting      $(REPORTING_URL)/docs"
	@echo "  audit watch    http://127.0.0.1:$${IPMG_AUDIT_WATCH_PORT:-8005}/metrics"
	@echo "  tokens         uv run ipmg token issue --subject you@ncsw.example.org --unit ncsw --role secretariat"
	@echo "  logs           make logs   (files in $${IPMG_STATE_DIR:-$$HOME/.local/state/ipmg}/run)"
	@echo "  stop           make down"

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
	@bash $(LOCAL)/browser.sh
	@bash $(LOCAL)/asyncapi.sh
	@bash $(LOCAL)/promtool.sh
	@$(UV) run --frozen pytest

.PHONY: bench
bench: up-infra
	@$(UV) sync --frozen --group bench --quiet
	@$(UV) run --frozen python -m bench

# pip-audit over the exact versions uv.lock holds, every group included. --strict: a package it
# could not look up fails the audit instead of passing unseen. AUDIT_SERVICE=osv asks OSV
# instead of PyPI's advisory feed.
PIP_AUDIT := pip-audit==2.10.1
AUDIT_SERVICE ?= pypi
.PHONY: audit-deps
audit-deps: uv
	@$(UV) export --frozen --all-packages --all-groups --no-emit-workspace --no-hashes --quiet | \
		$(UV) tool run --from "$(PIP_AUDIT)" pip-audit --requirement /dev/stdin --no-deps \
		--disable-pip --strict --progress-spinner off --vulnerability-service $(AUDIT_SERVICE)
