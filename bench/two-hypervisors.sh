#!/usr/bin/env bash
# Benchmark: what a second hypervisor costs, measured in one run (root). Two lab libvirtds
# ("hosts"), each reached only as `qemu+ssh://` (an sshd sharing the daemon's mount and network
# namespaces, over a veth from here; its VMs reached through that sshd as a jump), their cluster
# bridges joined by a veth pair. The same two VMs (a controller and a worker, 1 GiB each, TCG) are
# made twice, with fresh pools: both on the first host, then one on each host:
#  (a) create-vms (the template uploaded to one host vs to both at once; the VMs booted and
#      verified together either way), (b) create-vms with nothing to do, (c) status.
# Usage: bench/two-hypervisors.sh   (needs `make lab-deps`; builds the image if it is missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
KUBICLUSTER_IMAGE=$IMAGE "$BIN" image build >/dev/null 2>&1

labenv() { env KUBICLUSTER_LAB=1 KUBICLUSTER_NAME="$1" KUBICLUSTER_WORK_DIR="$TMP/$1/work" "$BIN" "${@:2}"; }
cleanup_hosts() {
  remote_cleanup
  for h in benchhv1 benchhv2; do labenv "$h" lab down >/dev/null 2>&1 || true; done
  cleanup
}
trap cleanup_hosts EXIT

# host_up NAME NET: a lab libvirtd as a remote host (sshd at 10.253.NET.2), with a bridge kcbr;
# sets URI and NS.
host_up() {
  mkdir -p "$TMP/$1"
  labenv "$1" lab up >/dev/null
  remote_host "$TMP/$1/work/$1/lab/lab.yaml" "$2" "$TMP/$1"
  ip netns exec "$NS" ip link add kcbr type bridge
  ip netns exec "$NS" ip link set kcbr up
}
host_up benchhv1 81; uri1=$URI; ns1=$NS
host_up benchhv2 82; uri2=$URI; ns2=$NS
# (the pair goes with the namespaces)
ip link add "kbx$$" netns "$ns1" type veth peer name "kby$$" netns "$ns2"
ip netns exec "$ns1" ip link set "kbx$$" master kcbr up
ip netns exec "$ns2" ip link set "kby$$" master kcbr up

# spec NAME HYPERVISORS WORKER_HOST
spec() {
  cat > "$TMP/$1.yaml" <<EOF
apiVersion: kubicluster.io/v1alpha1
kind: Cluster
metadata: {name: $1}
spec:
  workDir: $TMP/$1-work
  nodeDefaults: {memoryMiB: 1024}
  networks: {cluster: {mode: bridged, bridge: kcbr}}
  hypervisor: {mode: host, domainType: qemu, storagePool: $1, storageDir: /var/lib/libvirt/images/$1, image: $IMAGE}
  hypervisors:
$2
  nodes:
    - {name: kubi-controller-01, role: controller, clusterIP: 192.168.24.11, hypervisorIP: 192.168.122.11, hypervisor: hv1}
    - {name: kubi-worker-01, role: worker, clusterIP: 192.168.24.21, hypervisorIP: 192.168.122.21, hypervisor: $3}
EOF
}
spec benchone "    - {name: hv1, uri: \"$uri1\"}" hv1
spec benchtwo "    - {name: hv1, uri: \"$uri1\"}
    - {name: hv2, uri: \"$uri2\"}" hv2
kc() { HOME="$TMP" "$BIN" "${@:2}" -f "$TMP/$1.yaml"; }
for c in benchone benchtwo; do
  a=$(timed kc "$c" create-vms)
  b=$(timed kc "$c" create-vms)
  s=$(timed kc "$c" status)
  kc "$c" status >/dev/null 2>&1 || { echo "error: $c is not healthy" >&2; kc "$c" status >&2 || true; exit 1; }
  kc "$c" destroy >/dev/null 2>&1
  eval "${c}_a=$a ${c}_b=$b ${c}_s=$s"
done

template=$(( $(stat -c %s "$IMAGE") >> 20 ))
printf '%-58s %10s %10s %8s\n' "qemu+ssh hypervisors, 2 VMs (1 GiB, TCG)" "one (s)" "two (s)" "ratio"
row() { printf '%-58s %10s %10s %7sx\n' "$1" "$2" "$3" "$(ratio "$3" "$2")"; }
row "(a) create-vms, template (${template} MiB) uploaded" "$benchone_a" "$benchtwo_a"
row "(b) create-vms, nothing to do" "$benchone_b" "$benchtwo_b"
row "(c) status" "$benchone_s" "$benchtwo_s"
