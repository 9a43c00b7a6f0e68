# CRM: local bootstrap, run and test. `make` alone lists the targets.
#
# Everything here is safe to run again: targets skip what is already done
# (a venv that matches the lock, servers that already answer, services that
# already run).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory

PYTHON ?= python3.11
VENV := .venv
# Installable packages under services/, the shared kernel first.
PACKAGES := common customers sales notifications reporting gateway
SERVICES := customers sales notifications reporting gateway
DATABASES := $(addprefix crm_,$(SERVICES))
# sqlite (one file per service under var/) or postgres (one database per service).
CRM_DB ?= sqlite
export CRM_DB
PIP_TOOLS_VERSION := 7.6.2

.PHONY: help venv rabbitmq postgres databases promtool up down scale ps logs test bench bench-deep seed clean loadtest-venv lock kustomize \
	loadtest loadtest-master loadtest-worker

help: ## list the targets
	@echo "usage: make TARGET   (CRM_DB=postgres make up: run on PostgreSQL instead of SQLite)"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-16s %s\n", $$1, $$2 }'

# --- Python environments --------------------------------------------------

venv: $(VENV)/.editable ## create .venv from requirements.lock and install the services editable

# The venv needs ensurepip, which Debian's own python3 ships separately.
$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { source scripts/lib.sh; apt_install python3-venv; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the lock changed since the last successful install.
# --require-hashes: every package, setuptools included, is the exact file locked.
$(VENV)/.installed: requirements.lock | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements.lock
	touch $@

# The services' own packages, editable and without dependencies (those are all
# in the lock). --no-build-isolation builds them with the locked setuptools
# instead of fetching an unpinned one. A package whose pyproject.toml does not
# exist yet is skipped with a warning, and the stamp is left stale so the next
# run tries again.
$(VENV)/.editable: $(VENV)/.installed $(wildcard $(PACKAGES:%=services/%/pyproject.toml))
	@args=(); missing=0; \
	for pkg in $(PACKAGES); do \
	    if [[ -f services/$$pkg/pyproject.toml ]]; then args+=(-e "services/$$pkg"); \
	    else echo "warning: services/$$pkg/pyproject.toml missing, not installed" >&2; missing=1; fi; \
	done; \
	if (( $${#args[@]} )); then \
	    echo "$(VENV)/bin/pip install --no-deps --no-build-isolation $${args[*]}"; \
	    $(VENV)/bin/pip install --quiet --no-deps --no-build-isolation "$${args[@]}"; \
	fi; \
	if (( ! missing )); then touch $@; fi

# locust runs on gevent, the services on eventlet: never one interpreter.
loadtest-venv: loadtests/.venv/.installed ## create loadtests/.venv (locust) from loadtests/requirements.lock

loadtests/.venv/bin/python:
	$(PYTHON) -m venv loadtests/.venv

loadtests/.venv/.installed: loadtests/requirements.lock | loadtests/.venv/bin/python
	loadtests/.venv/bin/pip install --quiet --require-hashes -r loadtests/requirements.lock
	touch $@

# Load tests (loadtests/locustfile.py), headless; QA's knobs as make variables:
#   USERS, SPAWN_RATE, DURATION   how many locust users, started how fast, for how long
#   HOST                          the gateway to load
#   SHAPE=name                    a load shape, loadtests/shapes/<name>.py (it sets users over time)
#   PERSONAS="SalesRep Manager"   only these user classes (default: all, the AMQP user CustomersRpcUser
#                                 too: against a system elsewhere set LOADTEST_AMQP_URI or leave it out)
#   WORKERS                       local worker processes (loadtest), or workers to wait for (loadtest-master)
# Accounts: LOADTEST_ADMIN_EMAIL / LOADTEST_ADMIN_PASSWORD (default admin@example.com and
# var/admin-password), LOADTEST_ACCOUNTS_PER_ROLE (crmload/accounts.py). Stats (CSV, with history),
# the HTML report and crmload.plugins' report land in var/loadtest/<UTC time>/.
USERS ?= 50
SPAWN_RATE ?= 5
DURATION ?= 5m
HOST ?= http://127.0.0.1:8000
WORKERS ?= 2
LOADTEST_DIR := var/loadtest/$(shell date -u +%Y%m%dT%H%M%SZ)
comma := ,
LOCUST := loadtests/.venv/bin/locust -f loadtests/locustfile.py$(if $(SHAPE),$(comma)loadtests/shapes/$(SHAPE).py)
LOCUST_RUN = --headless -u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) --host $(HOST) \
	--csv $(LOADTEST_DIR)/locust --csv-full-history --html $(LOADTEST_DIR)/report.html \
	--report-dir $(LOADTEST_DIR) $(PERSONAS)

loadtest: loadtest-venv ## run the load test here: a master and WORKERS local workers (USERS, DURATION, SHAPE ...)
	@mkdir -p $(LOADTEST_DIR)
	$(LOCUST) --processes $(WORKERS) $(LOCUST_RUN)

loadtest-master: loadtest-venv ## run a load-test master that waits for WORKERS workers (make loadtest-worker)
	@mkdir -p $(LOADTEST_DIR)
	$(LOCUST) --master --expect-workers $(WORKERS) $(LOCUST_RUN)

loadtest-worker: loadtest-venv ## run load-test workers for a master on another machine (MASTER=host, WORKERS)
	@[[ -n "$(MASTER)" ]] || { echo "usage: make loadtest-worker MASTER=<the master's host> [WORKERS=N]" >&2; exit 2; }
	$(LOCUST) --worker --master-host $(MASTER) --processes $(WORKERS)

# Resolved against PyPI alone (no machine-local pip config, wheel folders or
# constraints), so the hashes are those of PyPI's files and the lock installs
# the same anywhere.
PIP_COMPILE := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null .venv-tools/bin/pip-compile \
	--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

lock: ## regenerate requirements.lock, loadtests/ and deploy/tools/ requirements.lock from the .in files
	@[[ -x .venv-tools/bin/pip-compile ]] || { $(PYTHON) -m venv .venv-tools && .venv-tools/bin/pip install --quiet pip-tools==$(PIP_TOOLS_VERSION); }
	$(PIP_COMPILE) --output-file requirements.lock requirements.in
	$(PIP_COMPILE) --output-file loadtests/requirements.lock loadtests/requirements.in
	cd deploy/tools && $(PIP_COMPILE:.venv-tools/%=../../.venv-tools/%) --output-file requirements.lock requirements.in

# --- Servers ----------------------------------------------------------------

rabbitmq: ## make sure RabbitMQ (with management API) answers on 127.0.0.1
	@scripts/ensure-rabbitmq.sh

postgres: ## make sure PostgreSQL answers on 127.0.0.1:5432 (user postgres, no password)
	@scripts/ensure-postgres.sh

databases: postgres ## create the services' PostgreSQL databases if missing
	@scripts/ensure-databases.sh $(DATABASES)

promtool: ## make sure promtool and prometheus are installed (the server is not started)
	@scripts/ensure-promtool.sh

# deploy/test_deploy.py renders deploy/k8s with `kubectl kustomize`; Debian 12's
# kubernetes-client (kubectl 1.20) is enough, a newer kubectl or kustomize too.
kustomize: ## make sure kubectl (or kustomize) can render deploy/k8s offline
	@command -v kubectl >/dev/null || command -v kustomize >/dev/null || { source scripts/lib.sh; apt_install kubernetes-client; }

# --- Running the CRM --------------------------------------------------------

# When make started: crm-up.sh reports the wall time of the whole `make up`.
STARTED_AT := $(shell date +%s.%N)

up: venv rabbitmq $(if $(filter postgres,$(CRM_DB)),databases) ## start all services in the background and wait until ready
	@CRM_UP_STARTED_AT=$(STARTED_AT) scripts/crm-up.sh

down: ## stop the services started by `make up`
	@scripts/crm-down.sh

scale: ## run N instances of one service next to `make up`'s (SERVICE=customers N=3; needs CRM_DB=postgres)
	@scripts/crm-scale.sh "$(SERVICE)" "$(N)"

ps: ## show each service's pid, state, port and /health
	@scripts/crm-ps.sh

logs: ## show the last 50 lines of each service log (F=1 follows them)
	@shopt -s nullglob; logs=(var/*.log); \
	if (( ! $${#logs[@]} )); then echo "no logs in var/"; exit 0; fi; \
	if [[ -n "$(filter 1 yes true,$(F))" ]]; then exec tail -n 50 -F "$${logs[@]}"; fi; \
	tail -n 50 "$${logs[@]}"

# --- Tests ------------------------------------------------------------------

test: venv loadtest-venv rabbitmq postgres promtool kustomize ## run every test suite (ARGS='-x -k name' go to each)
	@scripts/run-tests.sh $(ARGS)

# One table: the main routes at 32 connections next to the floor (a bare nameko
# HTTP -> RPC echo) measured in the same run; figures saved to var/bench/. Exits 1
# when a target is missed, naming it. BENCH_SECONDS / BENCH_CONNECTIONS change the load;
# BENCH_DB=sqlite runs the services on SQLite files, as the default stack does (its own data set
# and page, docs/performance-sqlite.md).
bench: venv loadtest-venv rabbitmq postgres ## rps and p50/p95/p99 of the main routes vs the stack's floor, one table (var/bench/latest.json)
	@.venv/bin/python loadtests/bench/run_bench.py --seconds $(or $(BENCH_SECONDS),20) \
	    --connections $(or $(BENCH_CONNECTIONS),32) --database $(or $(BENCH_DB),postgresql)

# The single-purpose benchmarks, deeper than `make bench` on one thing each. Every one
# runs even when an earlier one misses its goal (their numbers are what QA wants);
# make bench-deep then fails, naming the ones that missed.
bench-deep: venv rabbitmq postgres ## search, import, report latency and freshness benchmarks, one after another
	@missed=""; \
	.venv/bin/python loadtests/bench/search_customers.py --customers $(or $(CUSTOMERS),100000) || missed="$$missed search_customers"; \
	.venv/bin/python loadtests/bench/import_customers.py --start-system --rows $(or $(ROWS),100000) || missed="$$missed import_customers"; \
	.venv/bin/python loadtests/bench/report_latency.py --runs $(or $(REPORT_RUNS),50) || missed="$$missed report_latency"; \
	.venv/bin/python loadtests/bench/report_freshness.py --rate $(or $(WRITE_RATE),200) --seconds $(or $(WRITE_SECONDS),60) || missed="$$missed report_freshness"; \
	if [ -n "$$missed" ]; then echo "make bench-deep: missed its goal or failed:$$missed" >&2; exit 1; fi

# Realistic test data through the public API of a running system (`make up`; for large N
# start it with CRM_RATE_LIMIT_PER_MINUTE=0). The same SEED twice adds nothing new.
seed: venv ## fill the running CRM with test data (N=1000 customers, SEED=42, HOST=http://127.0.0.1:8000)
	.venv/bin/python loadtests/seed.py --customers $(or $(N),1000) --seed $(or $(SEED),42) \
	    --host $(or $(HOST),http://127.0.0.1:8000)

clean: down ## stop the services and delete var/ (databases, logs, generated secrets, the data-key file: back up var/data-keys.json first if any database is kept)
	rm -rf var
