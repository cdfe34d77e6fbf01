# Self-documenting task runner: `make help`. CI (.ci/run) calls `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOTSPOTS := $(BIN)/hotspots
DEMO_FROM ?= 2022-12-01
DEMO_TO ?= 2023-11-30

.DEFAULT_GOAL := help
.PHONY: help install kafka-jars demo up down status test test-unit test-integration test-faults lint typecheck verify-compose check-rules clean web web-deps

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(BIN)/activate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/activate

install: $(BIN)/activate ## Create .venv and install the package with its pinned dependencies

kafka-jars: install ## Fetch Apache Kafka's broker jars from Maven Central into the cache
	$(HOTSPOTS) kafka fetch

# Queries state why they are made (audit log); yours wins if HOTSPOTS_JUSTIFICATION is set.
demo: export HOTSPOTS_JUSTIFICATION ?= make demo: the synthetic year, no real data
demo: install kafka-jars ## Start the stack, produce the synthetic year, print the summary and top cells
	$(HOTSPOTS) up
	$(HOTSPOTS) produce synthetic --seed 2023
	$(HOTSPOTS) wait --timeout 300
	$(HOTSPOTS) query summary --from $(DEMO_FROM) --to $(DEMO_TO) --format json
	$(HOTSPOTS) query top --week 2023-W31 --kind arrest --res 8 --limit 10
	@echo "stack still running: 'make down' stops it; '$(HOTSPOTS) --help' for more"

up: install kafka-jars ## Start the stack in the background
	$(HOTSPOTS) up

down: ## Stop the stack
	$(HOTSPOTS) down

status: ## Show the stack's health
	$(HOTSPOTS) status

test: install kafka-jars web-deps lint ## Every test: unit, integration against the real broker, then the fault suite reduced (200k events, 20 kill -9s)
	$(BIN)/pytest tests -q --ignore=tests/faults --durations=15
	HOTSPOTS_FAULT_EVENTS=200000 $(BIN)/pytest tests/faults -q --durations=10

test-unit: install ## Unit tests only (no broker)
	$(BIN)/pytest tests/unit -q

test-integration: install kafka-jars web-deps ## Integration tests against the real local broker, worker and sink
	$(BIN)/pytest tests/integration -q -m integration

FAULT_EVENTS ?= 1000000
test-faults: install kafka-jars ## The fault-injection suite in full: 1M events, 20 kill -9s (docs/exactness.md)
	HOTSPOTS_FAULT_EVENTS=$(FAULT_EVENTS) $(BIN)/pytest tests/faults -q -s

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web-deps: web/node_modules/.package-lock.json ## Install the map's pinned npm packages (playwright-core for the browser test)

web: web-deps ## Rebuild the live map's bundle into sinks/static/ (committed; needs Node only to build)
	cd web && npm run build

lint: install ## ruff and mypy
	$(BIN)/ruff check hotspots producers streams sinks tests bench
	$(BIN)/mypy

verify-compose: install ## Check docker-compose.yml parses and follows the project's rules
	$(BIN)/python -m hotspots.compose_check docker-compose.yml

bench: install kafka-jars ## Benchmarks beside their baselines (1M events x3 end to end, 10M-row queries); see docs/bench.md
	$(BIN)/python -m bench.pipeline --events $${BENCH_EVENTS:-1000000} --runs 3
	$(BIN)/python -m bench.queries

bench-smoke: install kafka-jars ## Short end-to-end run; fails if its ratio to the bare consumer drops below half the reference
	$(BIN)/python -m bench.pipeline --smoke --events 20000

check-rules: ## Check Prometheus's config and rules, and run the rules' unit tests (promtool)
	promtool check config dashboards/prometheus/prometheus.yml
	promtool check rules dashboards/prometheus/rules.yml
	promtool test rules dashboards/prometheus/rules.test.yml

clean: ## Remove the virtualenv and caches (not the data dir)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
