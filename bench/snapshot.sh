#!/usr/bin/env bash
# Benchmark: bringing a cluster back to a known state, two ways, in one run on the lab
# (1 controller + 2 workers, TCG, bridge pod network, binaries from `artifacts build`):
# `up` from nothing (image cached) against `snapshot revert` to a snapshot taken right after it,
# with what the snapshot itself cost (the VMs' pause, the whole command) and the size of the
# disk layers. Both end with every worker Ready. Measured in one run.
# Usage: bench/snapshot.sh   (needs `make lab-deps artifacts`; builds the image if it is missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=benchsnap KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE \
  KUBICLUSTER_MEMORY_MIB=1536 KUBICLUSTER_ARTIFACTS=build KUBICLUSTER_CNI=bridge

"$BIN" image build >/dev/null 2>&1

echo "a cluster back to a known state (1 controller + 2 workers, TCG, $(nproc) cores)"
t0=$(now)
"$BIN" up --skip-test >"$TMP/up" 2>&1 || { cat "$TMP/up" >&2; exit 1; }
t1=$(now)
up=$(secs "$t0" "$t1")
echo "  up from nothing to every node Ready: ${up} s"

t0=$(now)
"$BIN" snapshot create bench >"$TMP/create" 2>&1 || { cat "$TMP/create" >&2; exit 1; }
t1=$(now)
echo "  snapshot create: $(secs "$t0" "$t1") s   ($(tail -1 "$TMP/create" | sed 's/^snapshot bench: //'))"

t0=$(now)
"$BIN" snapshot revert bench --yes >"$TMP/revert" 2>&1 || { cat "$TMP/revert" >&2; exit 1; }
t1=$(now)
revert=$(secs "$t0" "$t1")
grep -q "every worker Ready again" "$TMP/revert" || { cat "$TMP/revert" >&2; exit 1; }
echo "  snapshot revert to every node Ready: ${revert} s   $(tail -1 "$TMP/revert" | grep -oE '\(controllers booted[^)]*\)')"
echo "  up / revert: $(ratio "$up" "$revert")x"
"$BIN" snapshot list | sed 's/^/    /'
echo "not started here: kata (no nested virtualisation), calico (the bridge pod network runs); KVM guests (TCG only)"
