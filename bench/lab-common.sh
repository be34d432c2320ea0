# Shared by the lab benchmarks (sourced): root check, release build, a temp dir removed (with
# the bench's lab) on exit, and the timing helpers. The caller exports its KUBICLUSTER_* settings.
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "error: run as root (the lab needs network namespaces)" >&2; exit 1; }
cargo build --release --locked -q
BIN=$PWD/target/release/kubicluster
IMAGE=${KUBICLUSTER_IMAGE:-$PWD/target/lab-image/kubicluster-bookworm.qcow2}
TMP=$(mktemp -d /tmp/kubibench.XXXXXX)
cleanup() { "$BIN" lab down >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# timed CMD...: the seconds CMD took (its output dropped).
timed() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); secs "$t0" "$t1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

# remote_host LAB_YAML NET DIR: the lab daemon that LAB_YAML (its lab.yaml) describes, as a remote
# host: a veth from here (10.253.NET.1 here, .2 there), an sshd in the daemon's mount and network
# namespaces, its keys and an OpenSSH wrapper held to its recorded key in DIR. Sets URI (qemu+ssh)
# and NS (the daemon's namespace); remote_cleanup removes every veth and sshd it made.
LINKS=()
SSHDS=()
remote_host() {
  local yaml=$1 net=$2 dir=$3 pid veth
  pid=$(awk '/^pid:/ { print $2 }' "$yaml")
  NS=$(awk '/^netns:/ { print $2 }' "$yaml")
  veth=kb$net$$
  ip link add "$veth" type veth peer name "${veth}n"
  LINKS+=("$veth")
  ip link set "${veth}n" netns "$NS"
  ip addr add "10.253.$net.1/30" dev "$veth"; ip link set "$veth" up
  ip netns exec "$NS" ip addr add "10.253.$net.2/30" dev "${veth}n"
  ip netns exec "$NS" ip link set "${veth}n" up
  ssh-keygen -q -t ed25519 -N '' -f "$dir/hv_host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  echo "10.253.$net.2 $(cat "$dir/hv_host_key.pub")" > "$dir/known_hosts"
  printf '#!/bin/sh\nexec ssh -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes "$@"\n' "$dir/known_hosts" > "$dir/ssh"
  chmod 755 "$dir/ssh"
  mkdir -p /run/sshd
  nsenter -t "$pid" -m -n /usr/sbin/sshd -D -f /dev/stdin <<EOF &
Port 22
ListenAddress 10.253.$net.2
HostKey $dir/hv_host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
LogLevel FATAL
EOF
  SSHDS+=($!)
  for _ in $(seq 1 100); do
    "$dir/ssh" -o BatchMode=yes -i "$dir/client_key" "root@10.253.$net.2" true 2>/dev/null && break
    sleep 0.2
  done
  URI="qemu+ssh://root@10.253.$net.2/system?keyfile=$dir/client_key&known_hosts=$dir/known_hosts&command=$dir/ssh"
}
remote_cleanup() {
  for p in "${SSHDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for l in "${LINKS[@]}"; do ip link del "$l" 2>/dev/null || true; done
}

# three_controllers NAME: the settings of a lab cluster NAME of three controllers and no worker
# (bench/ha.sh, bench/upgrade-ha.sh; on this 2-core machine a fourth busy VM starved the three API
# servers until none got ready), exported; C (the node list) and VIP set; its cluster file with
# Raft's timing relaxed for three etcd members on starved emulated CPUs (500 ms / 5 s; etcd's own
# defaults, 100 ms / 1 s, lost the leader again and again here while the API servers started).
three_controllers() {
  C="kubi-controller-01,192.168.24.11,192.168.122.11 kubi-controller-02,192.168.24.12,192.168.122.12 kubi-controller-03,192.168.24.13,192.168.122.13"
  VIP=192.168.24.10
  export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=$1 KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE \
    KUBICLUSTER_MEMORY_MIB=1536 KUBICLUSTER_ARTIFACTS=build KUBICLUSTER_CNI=bridge \
    KUBICLUSTER_CONTROLLERS="$C" KUBICLUSTER_FILE=$TMP/cluster.yaml
  cat >"$TMP/cluster.yaml" <<YAML
apiVersion: kubicluster.io/v1alpha1
kind: Cluster
metadata: {name: $1}
spec:
  etcd: {heartbeatIntervalMs: 500, electionTimeoutMs: 5000}
YAML
}

# upgrade_with_client FROM TO: `upgrade --to TO` while the client started as $CLIENT runs (its
# output in $TMP/upgrade, each line also with the time it came in $TMP/upgrade.timed; t0 and t1
# set around it), then the client stopped ($TMP/stop) 5 s later.
upgrade_with_client() {
  echo "upgrade $1 -> $2"
  t0=$(now)
  "$BIN" upgrade --to "$2" 2>&1 | while IFS= read -r l; do echo "$(now) $l" >>"$TMP/upgrade.timed"; echo "$l"; done \
    >"$TMP/upgrade" || { touch "$TMP/stop"; cat "$TMP/upgrade" >&2; exit 1; }
  t1=$(now)
  sleep 5
  touch "$TMP/stop"
  wait "$CLIENT"
}
