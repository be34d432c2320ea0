#!/usr/bin/env bash
# Benchmark: `kubicluster artifacts build` for the default Kubernetes version, cold (empty Go
# module and build caches, and no previous output: everything downloaded from the module proxy
# and compiled) against warm (Go's caches kept, the output removed: only the links and the
# packing run again) and reused (a complete output: its SHA256SUMS verified, nothing built).
# Measured in one run on this machine. Usage: bench/artifacts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
cargo build --release --locked -q
BIN=$PWD/target/release/kubicluster
TMP=$(mktemp -d /tmp/kubibench.XXXXXX)
trap 'chmod -R u+w "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
run() { KUBICLUSTER_CACHE_DIR=$TMP/cache GOMODCACHE=$TMP/gomod GOCACHE=$TMP/gocache "$BIN" artifacts build --artifacts build "$@"; }

echo "artifacts build on $(nproc) cores ($(go version | cut -d' ' -f3))"
t0=$(now); run >"$TMP/cold" 2>&1 || { cat "$TMP/cold" >&2; exit 1; }; t1=$(now)
grep '  built' "$TMP/cold" | sed 's/^/    /'
cold=$(secs "$t0" "$t1")
echo "  cold (empty Go caches): ${cold} s; $(tail -1 "$TMP/cold" | sed 's/ in [0-9]* s$//')"
t0=$(now); run --force >"$TMP/warm" 2>&1; t1=$(now)
warm=$(secs "$t0" "$t1")
echo "  warm (Go caches kept, output rebuilt): ${warm} s"
t0=$(now); run >"$TMP/reuse" 2>&1; t1=$(now)
reuse=$(secs "$t0" "$t1")
echo "  reused (complete output, digests verified): ${reuse} s"
echo "  cold / warm: $(ratio "$cold" "$warm")x; Go caches: modules $(du -sh "$TMP/gomod" | cut -f1), build $(du -sh "$TMP/gocache" | cut -f1)"
