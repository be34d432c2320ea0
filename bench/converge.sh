#!/usr/bin/env bash
# Benchmark: converging nodes, measured in one run (root; a lab = private libvirtd in a netns).
#  (a) create-controllers on 1 lab controller: first run (etcd from Debian packages, control-plane
#      units and configs), then a no-op re-run (goal < 3 s, 0 uploads, 0 restarts), then one
#      changed input (the etcd server cert re-issued: only etcd restarts);
#  (b) the engine's fan-out over FakeHosts whose calls sleep: N nodes take about one node's time.
# The Kubernetes control-plane binaries cannot be downloaded here: their units are installed,
# not started (--allow-missing-binaries).
# Usage: bench/converge.sh   (needs `make lab-deps`; builds the image if it is missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
# One controller only: node flags replace the whole node list.
export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=benchc KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE \
  KUBICLUSTER_MEMORY_MIB=1024 KUBICLUSTER_ARTIFACTS=deb \
  KUBICLUSTER_CONTROLLERS=kubi-controller-01,192.168.24.11,192.168.122.11

run() { local t0 t1; t0=$(now); "$@" >"$TMP/out" 2>&1 || { cat "$TMP/out" >&2; exit 1; }; t1=$(now); secs "$t0" "$t1"; }
summary() { grep -E '(made|would make) [0-9]+ change' "$TMP/out" | sed 's/^[a-z-]*: //'; }

"$BIN" image build >/dev/null 2>&1
"$BIN" lab up >/dev/null 2>&1
"$BIN" prepare >/dev/null 2>&1
"$BIN" cnc >/dev/null 2>&1
"$BIN" create-vms >/dev/null 2>&1

echo "(a) create-controllers on 1 controller (TCG)"
first=$(run "$BIN" create-controllers --allow-missing-binaries)
echo "  first run:  ${first} s   $(summary)"
noop=$(run "$BIN" create-controllers --allow-missing-binaries)
echo "  no-op run:  ${noop} s   $(summary)   (first / no-op: $(ratio "$first" "$noop")x; goal < 3 s)"
"$BIN" cnc etcd --force >/dev/null 2>&1
changed=$(run "$BIN" create-controllers -d --allow-missing-binaries)
echo "  etcd certs re-issued: ${changed} s   $(summary); restarted: $(grep -oE '^ +restart [a-z.-]+ \(changed' "$TMP/out" | awk '{print $2}' | sort -u | tr '\n' ' ')"

echo "(b) engine fan-out with FakeHosts"
cargo run --release --locked -q --features testing --example fanout -- 16 20
