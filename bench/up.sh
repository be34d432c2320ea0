#!/usr/bin/env bash
# Benchmark: `kubicluster up` on the lab from nothing (template image and `artifacts build`
# cached) to a working cluster: 1 controller + 2 workers, bridge pod network, Kubernetes, etcd and
# images from the build, containerd/runc/CNI from Debian packages, with the time of every stage
# and node step, the time until every node is Ready, and the smoke test; then a no-op `up` (goal
# < 3 s of node work, nothing restarted). Measured in one run.
# Usage: [BASE_BIN=path/to/other/kubicluster] bench/up.sh   (needs `make lab-deps artifacts`;
# builds the image if it is missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=benchup KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE \
  KUBICLUSTER_MEMORY_MIB=1536 KUBICLUSTER_ARTIFACTS=build KUBICLUSTER_CNI=bridge

"$BIN" image build >/dev/null 2>&1

# Every output line with the time it appeared; a stage lasts until the next one starts. Node
# steps overlap (each node works through its steps in its own lane), so each node's line with
# its own time is printed too, and a node step's stage is from its start to the next start.
stamped() { "$@" 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$(now)" "$l"; done; }
stages() {
  awk '
    / \[[0-9]+\/[0-9]+\] / || / up: done/ || /: (made|would make) [0-9]+ change/ || /up: every node Ready/ || /up: smoke test$/ {
      if (name != "") printf "    %-58s %7.2f s\n", name, $1 - t
      t = $1; $1 = ""; name = substr($0, 2); sub(/ on [0-9]+ node\(s\).*/, "", name)
      next
    }
    /^[0-9.]+   [a-z0-9-]+( \([a-z_]+\))?: .*\([0-9.]+ s\)$/ { $1 = ""; printf "      %s\n", substr($0, 2) }'
}

# One first `up` with `bin`, printed by stage; its total in $first.
first_up() {
  local bin=$1 label=$2
  echo "up from nothing with $label (1 controller + 2 workers, TCG)"
  t0=$(now)
  stamped "$bin" up >"$TMP/first"
  t1=$(now)
  grep -q "up: done" "$TMP/first" || { cat "$TMP/first" >&2; exit 1; }
  stages <"$TMP/first"
  grep -E "up: every node Ready|test: every check passed|up: [0-9]+ s in all" "$TMP/first" | cut -d' ' -f2- | sed 's/^/  /'
  first=$(secs "$t0" "$t1")
  echo "  total: ${first} s   $(grep -oE '(made|would make) [0-9]+ change\(s\)[^,]*, [0-9]+ restart\(s\)' "$TMP/first" | tail -1)"
}

# BASE_BIN=<another kubicluster binary> (e.g. the landed one): its first `up` too, in the same
# run, from nothing as well (the cluster, its work dir and the lab removed in between).
if [ -n "${BASE_BIN:-}" ]; then
  first_up "$BASE_BIN" "BASE_BIN ($BASE_BIN)"
  base=$first
  "$BASE_BIN" destroy --all >/dev/null 2>&1 || true
  "$BASE_BIN" lab down >/dev/null 2>&1 || true
  rm -rf "$TMP/work"
fi
first_up "$BIN" "this tree"
[ -n "${BASE_BIN:-}" ] && echo "first up: BASE_BIN ${base} s, this tree ${first} s ($(ratio "$base" "$first")x)"

# A no-op `up` with `bin`: its wall time and peak memory (RSS) on the cluster just made.
noop_up() {
  local bin=$1
  t0=$(now)
  stamped /usr/bin/time -f "peak RSS %M KiB" "$bin" up --skip-test >"$TMP/noop"
  t1=$(now)
  noop=$(secs "$t0" "$t1")
  rss=$(grep -oE 'peak RSS [0-9]+' "$TMP/noop" | awk '{printf "%.0f", $3 / 1024}')
}
noop_up "$BIN"
echo "no-op up, by stage:"
stages <"$TMP/noop"
nodes=$(grep -oE 'up: made [0-9]+ change\(s\).* in [0-9.]+ s' "$TMP/noop" | tail -1)
echo "no-op up: ${noop} s in all, peak RSS ${rss} MiB (${nodes#up: })   (first / no-op: $(ratio "$first" "$noop")x; goal: < 3 s, 0 restarts)"
if [ -n "${BASE_BIN:-}" ]; then
  # Both binaries' no-op `up`s on the same cluster, alternating (the guests' load varies).
  for i in 1 2 3; do
    for b in "$BASE_BIN" "$BIN"; do
      noop_up "$b"
      grep -q 'made 0 change' "$TMP/noop" || { cat "$TMP/noop" >&2; exit 1; }
      echo "$b $noop $rss"
    done
  done | awk -v base="$BASE_BIN" '
    { w[$1] = w[$1] " " $2; r[$1] = $3; s[$1] += $2; n[$1]++ }
    END { for (b in w) printf "no-op up, %s: %s s (mean %.2f s), peak RSS %s MiB\n", (b == base ? "BASE_BIN" : "this tree"), w[b], s[b] / n[b], r[b] }'
fi
echo "not started here: kata (no nested virtualisation), calico (calico-node cannot be built or pulled here; the bridge pod network runs)"
