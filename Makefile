# kubicluster: `make up` brings the embedded default cluster's VMs up in a lab (a private libvirtd
# in a network namespace), `make test` runs every test tier. Both install what they need first.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export DEBIAN_FRONTEND := noninteractive
# Go builds the Kubernetes components (kubicluster artifacts build); this machine kind has it here.
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
KC := ./target/release/kubicluster
DEV_KC := ./target/debug/kubicluster

# Debian packages: building, and the real-component test tiers.
BUILD_PKGS := gcc make pkg-config libvirt-dev libssl-dev
TEST_PKGS := etcd-server etcd-client openssl openssh-client openssh-server systemd haproxy
BENCH_PKGS := golang-cfssl curl
# The hypervisor (libvirt + QEMU from bookworm) and the image recipe. A newer qemu-utils may be
# preinstalled and conflicts with bookworm's QEMU, hence qemu-utils/bookworm and --allow-downgrades.
LAB_PKGS := qemu-system-x86 libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients \
	dnsmasq-base iptables mmdebstrap fdisk extlinux syslinux-common e2fsprogs
# busybox-static: the smoke test's pod image is built from it (and the lab tests' images).
ARTIFACT_PKGS := busybox-static
# make up: the embedded default cluster (1 controller, 2 workers) with small VMs, in a lab.
# Kubernetes, etcd, CoreDNS and the pause image built from Go modules (`artifacts build`),
# containerd, runc and the CNI plugins from Debian packages (the lab VMs have no route out),
# the bridge pod network (calico-node cannot be built or pulled here).
UP_FLAGS ?= --lab --memory-mib 1536 --artifacts build --cni bridge
UP_ONLY_FLAGS ?=

.PHONY: up down status test deps test-deps lab-deps bench-deps artifacts-deps artifacts build lint bench clean

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

artifacts-deps: deps
	$(call apt_ensure,$(ARTIFACT_PKGS))
	@command -v go >/dev/null || { echo "error: go not found (looked on PATH and in /usr/local/go/bin); install Go >= 1.26 first"; exit 1; }

## The cluster's binaries and images from Go modules, into the cache (reused when complete).
artifacts: build artifacts-deps
	$(KC) artifacts build --artifacts build

test-deps: deps artifacts-deps
	$(call apt_ensure,$(TEST_PKGS))

bench-deps: lab-deps
	$(call apt_ensure,$(BENCH_PKGS))

lab-deps: deps
	@missing=""; for p in $(LAB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing the hypervisor packages:$$missing"; \
	  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends --allow-downgrades qemu-utils/bookworm $(LAB_PKGS) >/dev/null; \
	fi

build: deps
	$(CARGO) build --release --locked

## The main job on the embedded default cluster: lab, image, PKI, 3 VMs answering SSH.
up: build lab-deps artifacts-deps
	./target/release/kubicluster up $(UP_FLAGS) $(UP_ONLY_FLAGS)
	./target/release/kubicluster status $(UP_FLAGS)
	@echo "PKI and kubeconfigs: work/kubicluster/certs_and_configs/   remove everything: make down"

down:
	./target/release/kubicluster destroy --all $(UP_FLAGS)

status:
	./target/release/kubicluster status $(UP_FLAGS)

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Every tier: unit + snapshots, CLI, PKI (x509-parser + openssl), real etcd over mTLS, loopback
## sshd, a real control plane on loopback (built from Go modules), the VM labs (etcd from Debian
## packages; then a whole Kubernetes cluster that passes `kubicluster test`).
## The debug binary the tests run builds the artifacts too: no release build in a test run.
test: lab-deps test-deps lint artifacts-deps
	$(CARGO) build --locked
	$(DEV_KC) artifacts build --artifacts build
	@echo "tier wall times: see each test binary's 'finished in' line"
	KUBICLUSTER_TEST_ETCD=1 KUBICLUSTER_TEST_SSH=1 KUBICLUSTER_TEST_LAB=1 KUBICLUSTER_TEST_APISERVER=1 \
	KUBICLUSTER_TEST_ARTIFACTS="$$($(DEV_KC) artifacts dir --artifacts build)" \
	$(CARGO) test --locked --no-fail-fast

bench: bench-deps artifacts
	bench/artifacts.sh
	bench/cnc.sh
	bench/create-vms.sh
	bench/remote-hypervisor.sh
	bench/two-hypervisors.sh
	bench/converge.sh
	bench/up.sh
	bench/snapshot.sh
	bench/upgrade.sh

clean:
	$(CARGO) clean
	rm -rf work
