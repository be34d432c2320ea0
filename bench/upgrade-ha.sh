#!/usr/bin/env bash
# Benchmark and proof: `kubicluster upgrade` of a three-controller control plane on the lab (TCG;
# no worker: on this 2-core machine a fourth VM starves the three API servers, see bench/ha.sh)
# from FROM=1.36.3 (etcd 3.6.16) to TO=1.37.2 (etcd 3.7.3, kubeadm's pairing for 1.37): etcd
# first, member by member (followers, then the leader after leadership is handed over), then each
# controller's control plane. A client on the hypervisor asks the API through the virtual IP 5
# times a second during the whole upgrade for a list served from etcd (a new TLS connection each
# time, 2 s timeout). Prints the failed requests and the longest time without an answer, each
# member's and node's time, every member's etcd version and the storage version afterwards, and
# that `upgrade` again and `up` change nothing.
# Usage: [FROM=1.36.3] [TO=1.37.2] bench/upgrade-ha.sh   (builds both releases' artifacts if
# missing: with a cold Go cache that alone takes tens of minutes)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
FROM=${FROM:-1.36.3}
TO=${TO:-1.37.2}
three_controllers benchupgha

"$BIN" image build >/dev/null 2>&1
for v in "$FROM" "$TO"; do "$BIN" artifacts build --kubernetes-version "$v" >/dev/null; done

echo "up at $FROM: 3 controllers, no worker (no smoke test)"
t0=$(now)
"$BIN" up --skip-test --kubernetes-version "$FROM" >"$TMP/up" 2>&1 || { cat "$TMP/up" >&2; exit 1; }
echo "  $(secs "$t0" "$(now)") s"
NS=$(ip netns list | awk '/^kubilab-benchupgha/ { print $1; exit }')
D=$TMP/work/benchupgha/certs_and_configs
# etcd's own view, asked on kubi-controller-01.
members() {
  ip netns exec "$NS" ssh -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$TMP/work/benchupgha/ssh/known_hosts" -i "$TMP/work/benchupgha/ssh/id_ed25519" \
    root@192.168.122.11 /usr/local/bin/etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/etcd/etcd-ca.pem --cert=/etc/etcd/server.pem --key=/etc/etcd/server-key.pem \
    endpoint status --cluster -w json |
    python3 -c 'import json,sys
for e in json.load(sys.stdin):
    s = e["Status"]
    print("  etcd %s: %s%s, storage version %s" % (e["Endpoint"], s["version"],
          " (leader)" if s["leader"] == s["header"]["member_id"] else "", s.get("storageVersion", "?")))'
}
members

# The client: "<time> ok|fail" per request, 5 a second, until $TMP/stop exists.
rm -f "$TMP/stop"
(
  while [ ! -e "$TMP/stop" ]; do
    if ip netns exec "$NS" curl -fsS -m 2 -o /dev/null --cacert "$D/ca.pem" --cert "$D/admin.pem" \
      --key "$D/admin-key.pem" "https://$VIP:6443/api/v1/namespaces/kube-system/configmaps?limit=1" 2>/dev/null; then
      r=ok
    else
      r=fail
    fi
    echo "$(now) $r"
    sleep 0.2
  done >"$TMP/requests"
) &
CLIENT=$!
sleep 5

upgrade_with_client "$FROM" "$TO"
grep -E "^upgrade: etcd|^upgrade etcd \[|leadership moved|every etcd member|^upgrade \[|every node runs" "$TMP/upgrade" | sed 's/^/  /'
echo "  upgrade wall time: $(secs "$t0" "$t1") s"
awk -v t0="$t0" -v vip="$VIP" '
  $2 == "ok" { if (last && $1 - last > gap) { gap = $1 - last; end = $1 - t0 }; last = $1 }
  $2 == "fail" { fail++ } { n++ }
  END { printf "  API through %s during the upgrade: %d requests, %d failed, longest time without an answer: %.2f s (ending %.0f s into the upgrade)\n", vip, n, fail, gap, end }' "$TMP/requests"
# Which phase each failed request fell in (the last "upgrade [etcd] [i/n] NODE" line before it).
awk '
  FNR == NR { if ($2 == "upgrade" && ($3 ~ /^\[/ || $4 ~ /^\[/)) { n++; at[n] = $1; what[n] = $0; sub(/^[^ ]+ /, "", what[n]) } next }
  $2 == "fail" { p = 0; for (i = 1; i <= n; i++) if (at[i] <= $1) p = i; f[p]++ }
  END { for (i = 0; i <= n; i++) if (f[i]) printf "  failed during %s: %d\n", (i ? what[i] : "before the first node"), f[i] }' \
  "$TMP/upgrade.timed" "$TMP/requests"
members
for ip in 192.168.24.11 192.168.24.12 192.168.24.13; do
  v=$(ip netns exec "$NS" curl -fsS -m 5 --cacert "$D/ca.pem" --cert "$D/admin.pem" --key "$D/admin-key.pem" \
    "https://$ip:6443/version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])')
  echo "  kube-apiserver at $ip: $v"
done
"$BIN" status --kubernetes-version "$TO" >/dev/null && echo "  status: healthy"
t0=$(now)
"$BIN" upgrade --to "$TO" 2>&1 | grep -E "every node runs" | sed 's/^/  upgrade again: /'
echo "  upgrade again: $(secs "$t0" "$(now)") s"
"$BIN" up --skip-test --kubernetes-version "$TO" 2>&1 | grep -E "made [0-9]+ change" | tail -1 | sed 's/^/  up after it: /'
