# credshift: build, test and lint entry points. `make test` is the one command
# that runs every test (see README, Testing).

SHELL := /bin/bash
CARGO ?= cargo
# Cargo's target dir; CI points it outside the clone so warm runs are fast.
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
TESTENV_DIR := $(CARGO_TARGET_DIR)/testenv
# Where the tests find kube-testenv and kubectl.
export CREDSHIFT_TESTENV_DIR := $(TESTENV_DIR)

.PHONY: all build testenv test lint fmt crds openapi clean

all: build

build:
	$(CARGO) build --locked

## The real kube-apiserver + etcd and kubectl for tests, built from Go modules (cached).
testenv:
	scripts/build-testenv.sh $(TESTENV_DIR)

## Every test: unit, integration (real API server, PostgreSQL, SQLite), doc tests.
test: testenv
	$(CARGO) test --locked --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate the committed CRDs from the Rust types (tests/generated.rs fails when they are stale).
crds:
	$(CARGO) run --quiet --locked -- crd > crds/credshift.dev.yaml

## Regenerate api/openapi.json from the API's handlers and types (tests/generated.rs fails when it is stale).
openapi:
	$(CARGO) run --quiet --locked -- openapi > api/openapi.json

clean:
	$(CARGO) clean
