#!/usr/bin/env bash
# Benchmark: `kubicluster up` on the lab from nothing (template image cached) to the last step,
# 1 controller + 2 workers, bridge pod network, node components from Debian packages, with the
# time of every stage and node step; then a no-op `up` (goal < 3 s of node work, nothing
# restarted). Measured in one run. Kubernetes binaries cannot be had here: their units are
# installed, not started (--allow-missing-binaries), and the smoke test does not run.
# Usage: bench/up.sh   (needs `make lab-deps`; builds the image if it is missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=benchup KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE \
  KUBICLUSTER_MEMORY_MIB=1024 KUBICLUSTER_ARTIFACTS=deb KUBICLUSTER_CNI=bridge

"$BIN" image build >/dev/null 2>&1

# Every output line with the time it appeared; a stage lasts until the next one starts.
stamped() { "$@" 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$(now)" "$l"; done; }
stages() {
  awk '
    / \[[0-9]+\/[0-9]+\] / || / up: done/ || /: (made|would make) [0-9]+ change/ {
      if (name != "") printf "    %-58s %7.2f s\n", name, $1 - t
      t = $1; $1 = ""; name = substr($0, 2); sub(/ on [0-9]+ node\(s\).*/, "", name)
    }'
}

echo "up from nothing (1 controller + 2 workers, TCG)"
t0=$(now)
stamped "$BIN" up --allow-missing-binaries >"$TMP/first"
t1=$(now)
grep -q "up: done" "$TMP/first" || { cat "$TMP/first" >&2; exit 1; }
stages <"$TMP/first"
first=$(secs "$t0" "$t1")
echo "  total: ${first} s   $(grep -oE '(made|would make) [0-9]+ change\(s\)[^,]*, [0-9]+ restart\(s\)' "$TMP/first" | tail -1)"

t0=$(now)
stamped "$BIN" up --allow-missing-binaries >"$TMP/noop"
t1=$(now)
noop=$(secs "$t0" "$t1")
echo "no-op up, by stage:"
stages <"$TMP/noop"
nodes=$(grep -oE 'up: made [0-9]+ change\(s\).* in [0-9.]+ s' "$TMP/noop" | tail -1)
echo "no-op up: ${noop} s in all (${nodes#up: })   (first / no-op: $(ratio "$first" "$noop")x; goal: node steps < 3 s, 0 restarts)"
echo "not started here: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (no binaries), kata (no nested virtualisation), calico/CoreDNS (no registry)"
