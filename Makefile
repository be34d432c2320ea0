# kubicluster: `make up` runs the main job on the embedded default cluster,
# `make test` runs every test tier. Both install what they need (apt, cargo) first.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export DEBIAN_FRONTEND := noninteractive

# Debian packages: building, and the real-component test tiers.
BUILD_PKGS := gcc make pkg-config
TEST_PKGS := etcd-server etcd-client openssl
BENCH_PKGS := golang-cfssl

.PHONY: up test deps test-deps bench-deps build lint bench clean

# Install Debian packages that are missing (apt-get update only when something is).
define apt_ensure
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: installing$$missing needs root (run as root or install them)"; exit 1; fi; \
	  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_ensure,$(BUILD_PKGS))
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install a Rust toolchain >= 1.89 (rustup) first"; exit 1; }

test-deps: deps
	$(call apt_ensure,$(TEST_PKGS))

bench-deps: deps
	$(call apt_ensure,$(BENCH_PKGS))

build: deps
	$(CARGO) build --release --locked

## The main job on the embedded default cluster (1 controller, 2 workers): today the PKI.
up: build
	./target/release/kubicluster cnc
	@echo
	@echo "certificates, kubeconfigs and the encryption config are in work/kubicluster/certs_and_configs/"
	@echo "admin kubeconfig: ./target/release/kubicluster kubeconfig -o admin.kubeconfig"

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Every tier: unit + snapshots, CLI, PKI (x509-parser + openssl), real etcd over mTLS.
test: test-deps lint
	KUBICLUSTER_TEST_ETCD=1 $(CARGO) test --locked --no-fail-fast

bench: bench-deps
	bench/cnc.sh

clean:
	$(CARGO) clean
	rm -rf work
