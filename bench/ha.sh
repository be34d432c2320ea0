#!/usr/bin/env bash
# Benchmark and proof: the API's virtual IP when a controller dies. The lab (TCG) with three
# controllers (etcd members, API servers, keepalived holding the virtual IP) and no worker: on
# this 2-core machine a fourth VM starved the three API servers until none got ready. A client on
# the hypervisor asks the API's /readyz at the virtual IP 10 times a second (a new TLS
# connection each time, 1 s timeout). The controller holding the address is powered off (libvirt
# `destroy`: no clean shutdown); the bench reports the longest time the API did not answer
# through the virtual IP, the failed requests, which controller took the address and etcd's
# health with one member gone. Then the VM is started again and `up` must change nothing. A
# second case stops only the (new) holder's kube-apiserver, its VM up: keepalived, part of the API
# server's unit, stops first and gives the address up; the same client and report. A third case
# hangs the holder's kube-apiserver (SIGSTOP: its port still accepts, nothing answers): keepalived's
# check fails twice and another controller takes the address.
# ENDPOINT=lb: the same three cases with the API behind a load-balancer VM (haproxy, at the same
# address, a fourth VM of 512 MiB) instead of the virtual IP; with no holder, each fault hits the
# next controller in turn (01, 02, 03), and `status` shows haproxy's view of each server.
# After each case on a running controller, keepalived's own lines from that controller (its
# health check failing, the state it entered), timed from the fault on the controller's clock.
# CASES picks the cases (default all three: poweroff stop hang).
# Usage: [ENDPOINT=vip|lb] [CASES="poweroff stop hang"] bench/ha.sh   (builds the artifacts if missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
three_controllers benchha
ENDPOINT=${ENDPOINT:-vip}
if [ "$ENDPOINT" = lb ]; then
  export KUBICLUSTER_LOADBALANCER=kubi-lb,$VIP,192.168.122.10
  WHERE="behind the load balancer at $VIP"
else
  WHERE="it holds $VIP"
fi
FAULTS=0
CASES=${CASES:-poweroff stop hang}
want() { case " $CASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

"$BIN" image build >/dev/null 2>&1
KUBECTL=$("$BIN" artifacts dir --artifacts build)/kubectl
"$BIN" artifacts build >/dev/null

echo "up: 3 controllers, no worker (no smoke test)"
t0=$(now)
"$BIN" up --skip-test >"$TMP/up" 2>&1 || { cat "$TMP/up" >&2; exit 1; }
echo "  $(secs "$t0" "$(now)") s"
NS=$(ip netns list | awk '/^kubilab-benchha/ { print $1; exit }')
D=$TMP/work/benchha/certs_and_configs
k() { ip netns exec "$NS" "$KUBECTL" --kubeconfig "$D/admin.kubeconfig" "$@"; }
virsh_lab() { virsh -q -c "qemu:///system?socket=$TMP/work/benchha/lab/run/libvirt-sock" "$@"; }
# The one controller holding the address ("" while none or several do; status may exit 3).
# With the load balancer: the controller the next fault hits.
holder() {
  if [ "$ENDPOINT" = lb ]; then printf 'kubi-controller-0%d\n' $((FAULTS % 3 + 1)); return; fi
  { "$BIN" status 2>/dev/null || true; } | awk '/^api: virtual IP .* held by kubi-/ { print $NF }'
}
# Wait (up to 120 s) until exactly one controller holds the address; say after how long.
one_holder() {
  local t0 h
  [ "$ENDPOINT" = lb ] && return 0
  t0=$(now)
  until h=$(holder) && [ -n "$h" ]; do
    [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -lt 120 ] || { echo "  no single holder after 120 s"; return 1; }
    sleep 2
  done
  echo "  one holder ($h) $(secs "$t_kill" "$(now)") s after the fault"
}
HOLDER=$(holder)
"$BIN" status 2>&1 | grep -E '^api: virtual IP|^load balancer|^api servers' | sed 's/^/  /'
[ -n "$HOLDER" ] || { echo "error: no controller holds $VIP" >&2; exit 1; }

# A client: "<time> ok|fail" per request, 10 a second, until $TMP/stop exists.
client() {
  while [ ! -e "$TMP/stop" ]; do
    if ip netns exec "$NS" curl -fsS -m 1 -o /dev/null "$@" 2>/dev/null; then r=ok; else r=fail; fi
    echo "$(now) $r"
    sleep 0.1
  done
}
report() {  # the longest time between two answers after the kill, and the failed requests
  awk -v t="$t_kill" -v what="$1" '
    $2 == "ok" { if (last && $1 > t && $1 - last > gap) gap = $1 - last; last = $1 }
    $2 == "fail" { fail++ } { n++ }
    END { printf "  %s: %d requests, %d failed, longest time without an answer after the kill: %.2f s\n", what, n, fail, gap }' "$2"
}

if want poweroff; then
client --cacert "$D/ca.pem" --cert "$D/admin.pem" --key "$D/admin-key.pem" "https://$VIP:6443/readyz" >"$TMP/api" &
A=$!
sleep 10
echo "power off $HOLDER ($WHERE)"
FAULTS=$((FAULTS + 1))
t_kill=$(now)
virsh_lab destroy "$HOLDER" >/dev/null
sleep 60
touch "$TMP/stop"
wait "$A"
report "API /readyz at $VIP" "$TMP/api"
"$BIN" status >"$TMP/status" 2>&1 || true
grep -E "^api: virtual IP|^load balancer|^api servers|^kubernetes |leader|not healthy" "$TMP/status" | sed 's/^/  /'
k get --raw /readyz >/dev/null && echo "  kubectl through $VIP: /readyz ok"

echo "start $HOLDER again"
t0=$(now)
virsh_lab start "$HOLDER" >/dev/null
until "$BIN" status >/dev/null 2>&1; do
  [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -lt 600 ] || { "$BIN" status >&2 || true; exit 1; }
  sleep 5
done
echo "  healthy again after $(secs "$t0" "$(now)") s"
"$BIN" status 2>&1 | grep -E '^api: virtual IP|^load balancer|^api servers' | sed 's/^/  /'
"$BIN" up --skip-test 2>&1 | grep -E "made [0-9]+ change" | tail -1 | sed 's/^/  up again: /'
fi

# A fault on the holder with its VM up: fault_on_holder NAME WHAT CMD...: the holder is read,
# the client runs 10 s, CMD runs on the holder over SSH, 30 s more; then the report, `status`
# and the wait for a single holder. Leaves HOLDER and IP set for what follows.
on_holder() {
  ip netns exec "$NS" ssh -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$TMP/work/benchha/ssh/known_hosts" -i "$TMP/work/benchha/ssh/id_ed25519" \
    "root@$IP" "$@"
}
fault_on_holder() {
  local name=$1 what=$2
  shift 2
  HOLDER=$(holder)
  IP=$(echo "$C" | tr ' ' '\n' | awk -F, -v n="$HOLDER" '$1 == n { print $3 }')
  rm -f "$TMP/stop"
  client --cacert "$D/ca.pem" --cert "$D/admin.pem" --key "$D/admin-key.pem" "https://$VIP:6443/readyz" >"$TMP/$name" &
  A=$!
  sleep 10
  echo "$what on $HOLDER ($WHERE; its VM stays up)"
  FAULTS=$((FAULTS + 1))
  t_kill=$(now)
  g_kill=$(on_holder "date +%s.%N; $*")
  sleep 30
  touch "$TMP/stop"
  wait "$A"
  report "API /readyz at $VIP" "$TMP/$name"
  [ "$ENDPOINT" = lb ] || keepalived_lines "$g_kill"
  { "$BIN" status 2>&1 || true; } | grep -E "^api: virtual IP|^load balancer|^api servers|not healthy" | sed 's/^/  /'
  one_holder
}
# keepalived's lines on the holder since the fault at its own time $1, each timed from it.
keepalived_lines() {
  on_holder journalctl -u kubicluster-vip -o short-unix --no-pager --since "@${1%.*}" |
    awk -v t="$1" '$1 ~ /^[0-9]+\.[0-9]+$/ && /Script|Entering|removing|sending|priority/ {
      d = $1 - t; $1 = ""; printf "  keepalived +%.2f s:%s\n", d, $0 }' | head -12
}

# Second case: the holder's API server stops (keepalived, part of its unit, stops first).
if want stop; then
fault_on_holder api2 "stop kube-apiserver" systemctl stop kube-apiserver
on_holder systemctl start kube-apiserver
"$BIN" up --skip-test 2>&1 | grep -E "made [0-9]+ change" | tail -1 | sed 's/^/  up after starting it again: /'
fi

# Third case: the holder's API server hangs, its port still open (keepalived's health check).
if want hang; then
fault_on_holder api3 "hang kube-apiserver (SIGSTOP)" systemctl kill -s STOP kube-apiserver
on_holder systemctl kill -s CONT kube-apiserver
sleep 10
{ "$BIN" status 2>&1 || true; } | grep -E "^api: virtual IP|^load balancer" | sed 's/^/  after SIGCONT: /'
"$BIN" up --skip-test 2>&1 | grep -E "made [0-9]+ change" | tail -1 | sed 's/^/  up after it: /'
fi
