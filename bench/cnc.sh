#!/usr/bin/env bash
# Benchmark: `kubicluster cnc` against the reference it replaces, measured in one run.
#
# Ours: the release binary, from a clean work dir each run, for 1 controller + 2 workers and for
# 3 + 5 (ECDSA P-256, the default, and RSA-2048). It writes every file `cnc` makes: 3 CAs, all
# leaves, kubeconfigs and the encryption config.
# Reference: the same certificate set the original kubicluster made, with cfssl (Debian's
# golang-cfssl) exactly as it called it: `cfssl gencert -initca` for the CA and
# `cfssl gencert -ca … -profile=kubicluster` per leaf, RSA keys of RSA_KEYLENGTH bits (8192 by
# default; 2048 as its README suggests). The reference makes fewer files (one CA, no etcd or
# front-proxy certs, no kubeconfigs: the original used kubectl for those), so the ratio favours it.
#
# Usage: bench/cnc.sh [RUNS]   (RUNS for ours and RSA-2048, default 10; RSA-8192 runs once per set)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
command -v cfssl >/dev/null && command -v cfssljson >/dev/null || { echo "error: cfssl/cfssljson missing: make bench-deps" >&2; exit 1; }
cargo build --release --locked -q
BIN=$PWD/target/release/kubicluster
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

now_ns() { date +%s%N; }

nodes() { # controllers workers -> legacy node flags
  local c=$1 w=$2 i
  for ((i = 1; i <= c; i++)); do printf -- '-c kubi-controller-%02d,192.168.24.%d,192.168.122.%d ' "$i" $((10 + i)) $((10 + i)); done
  for ((i = 1; i <= w; i++)); do printf -- '-w kubi-worker-%02d,192.168.24.%d,192.168.122.%d ' "$i" $((20 + i)) $((20 + i)); done
}

ours_ms() { # controllers workers algorithm runs -> median ms
  local c=$1 w=$2 alg=$3 runs=$4 r t0 t1 times=()
  for ((r = 0; r < runs; r++)); do
    rm -rf "$TMP/ours"
    t0=$(now_ns)
    # shellcheck disable=SC2046
    "$BIN" cnc --work-dir "$TMP/ours" --key-algorithm "$alg" $(nodes "$c" "$w") 2>/dev/null
    t1=$(now_ns)
    times+=($(((t1 - t0) / 1000)))
  done
  median "${times[@]}"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f", m/1000}'; }

csr() { # cn o -> json
  printf '{"CN":"%s","key":{"algo":"rsa","size":%d},"names":[{"O":"%s"}]}' "$1" "$KEYLEN" "$2"
}

ref_ms() { # controllers workers keylength runs -> median ms
  local c=$1 w=$2 runs=$4 r t0 t1 times=() i d hosts
  KEYLEN=$3
  for ((r = 0; r < runs; r++)); do
    d="$TMP/ref"; rm -rf "$d"; mkdir -p "$d"; cd "$d"
    echo '{"signing":{"default":{"expiry":"8760h"},"profiles":{"kubicluster":{"usages":["signing","key encipherment","server auth","client auth"],"expiry":"8760h"}}}}' >ca-config.json
    hosts="127.0.0.1,localhost,10.32.0.1,kubernetes.default"
    for ((i = 1; i <= c; i++)); do hosts+=$(printf ',kubi-controller-%02d,192.168.24.%d,192.168.122.%d' "$i" $((10 + i)) $((10 + i))); done
    t0=$(now_ns)
    csr Kubicluster Kubicluster >ca-csr.json
    cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca
    gen() { # name cn o [hosts]
      csr "$2" "$3" >"$1-csr.json"
      cfssl gencert -ca=ca.pem -ca-key=ca-key.pem -config=ca-config.json -profile=kubicluster ${4:+-hostname=$4} "$1-csr.json" 2>/dev/null | cfssljson -bare "$1"
    }
    gen kubernetes kubernetes Kubicluster "$hosts"
    gen service-accounts service-accounts Kubicluster
    gen admin admin system:masters
    gen calico-cni calico-cni Kubicluster
    for comp in kube-controller-manager kube-proxy kube-scheduler; do gen "$comp" "system:$comp" "system:$comp"; done
    for ((i = 1; i <= w; i++)); do
      n=$(printf 'kubi-worker-%02d' "$i")
      gen "$n" "system:node:$n" system:nodes "$n,192.168.24.$((20 + i))"
    done
    t1=$(now_ns)
    cd - >/dev/null
    times+=($(((t1 - t0) / 1000)))
  done
  median "${times[@]}"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a / b }'; }

echo "cnc benchmark: $(nproc) cores, median of $RUNS runs (RSA-8192 reference: 1 run)"
printf '%-8s %12s %12s %14s %14s %16s %16s\n' set "ours ecdsa" "ours rsa2048" "cfssl rsa2048" "cfssl rsa8192" "8192/ours-ecdsa" "2048/ours-rsa"
for set in "1 2" "3 5"; do
  read -r c w <<<"$set"
  oe=$(ours_ms "$c" "$w" ecdsa-p256 "$RUNS")
  or=$(ours_ms "$c" "$w" rsa-2048 "$RUNS")
  r2=$(ref_ms "$c" "$w" 2048 "$RUNS")
  r8=$(ref_ms "$c" "$w" 8192 1)
  printf '%-8s %10s ms %10s ms %12s ms %12s ms %15sx %15sx\n' "$c+$w" "$oe" "$or" "$r2" "$r8" "$(ratio "$r8" "$oe")" "$(ratio "$r2" "$or")"
done
