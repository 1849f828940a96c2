# ecom: the commands of the contract (../shared/CONTRACT.md). `make help` lists them.
SHELL := bash
.DEFAULT_GOAL := help

# Build output lives outside the clone so CI and every checkout on a machine share it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ecom/target
# sqlx query macros use the committed .sqlx/ data (`make sqlx-prepare` refreshes it).
export SQLX_OFFLINE ?= true

PROFILE ?= release
PROFILE_DIR := $(if $(filter dev test,$(PROFILE)),debug,$(PROFILE))
ECOMCTL_DEBUG := $(CARGO_TARGET_DIR)/debug/ecomctl
# Each service's database for `sqlx-prepare` (one database per service, see FIELD-NOTES).
SQLX_SERVICES := users products orders payments
SQLX_SERVER ?= postgres://postgres@127.0.0.1:5432

# Python linters for deploy files live in a venv outside the clone.
VENV ?= $(HOME)/.cache/ecom/venv
LINT_TOOLS := $(VENV)/bin/check-jsonschema

.PHONY: help up build test bench lint fmt sqlx-prepare sqlx-check clean-data

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

up: ## Build (release; PROFILE=dev for debug) and run the whole platform; Ctrl-C stops it
	cargo build --workspace --bins --profile $(PROFILE)
	$(CARGO_TARGET_DIR)/$(PROFILE_DIR)/ecomctl up $(ARGS)

build: ## Build every crate (debug)
	cargo build --workspace --all-targets

test: ## Every test (unit, integration, end-to-end) against real PostgreSQL and Redis
	cargo build --workspace --bins
	$(ECOMCTL_DEBUG) with-infra -- cargo nextest run --workspace --no-fail-fast $(NEXTEST_ARGS)

bench: ## The benchmark (docs/benchmarks.md): Products reads vs a bare axum endpoint, with wrk
	cargo build --workspace --bins --release
	$(CARGO_TARGET_DIR)/release/ecomctl with-infra --data-dir .ecom/bench -- env BIN=$(CARGO_TARGET_DIR)/release bash scripts/bench.sh

lint: $(LINT_TOOLS) ## rustfmt, clippy (warnings are errors), and the deploy-file linters
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

$(LINT_TOOLS):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check check-jsonschema

fmt: ## Format the code
	cargo fmt --all

sqlx-prepare: ## Refresh each service's .sqlx/ offline query data (needs sqlx-cli and PostgreSQL)
	@for s in $(SQLX_SERVICES); do \
	  (cd services/$$s && export DATABASE_URL=$(SQLX_SERVER)/ecom_$${s}_sqlx SQLX_OFFLINE=false && \
	   cargo sqlx database create && cargo sqlx migrate run && cargo sqlx prepare) || exit 1; \
	done

sqlx-check: ## Check that .sqlx/ matches the queries and migrations (needs sqlx-cli and PostgreSQL)
	@for s in $(SQLX_SERVICES); do \
	  (cd services/$$s && export DATABASE_URL=$(SQLX_SERVER)/ecom_$${s}_sqlx_check SQLX_OFFLINE=false && \
	   cargo sqlx database drop -y >/dev/null 2>&1; cargo sqlx database create && cargo sqlx migrate run && \
	   cargo sqlx prepare --check) || exit 1; \
	done

clean-data: ## Delete the private PostgreSQL/Redis data under .ecom/
	rm -rf .ecom
