#!/usr/bin/env bash
# Benchmark: what a remote hypervisor costs, measured in one run (root). One lab libvirtd is
# reached two ways: through its unix socket (lab mode, connections to the VM opened inside its
# namespace) and as a remote host (`qemu+ssh://` to an sshd sharing the daemon's mount and
# network namespaces, over a veth to 10.253.78.2; the VM reached through that sshd as a jump).
# The same VM (name, addresses, 1 GiB, TCG) is made each way, one after the other:
#  (a) create-vms of a fresh pool (the template goes in: a local stream vs a stream over SSH),
#  (b) create-vms again after destroy (the template is there: the VM alone),
#  (c) create-vms with nothing to do, (d) status.
# Usage: bench/remote-hypervisor.sh   (needs `make lab-deps`; builds the image if it is missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=benchl KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE KUBICLUSTER_MEMORY_MIB=1024
NODE=kubi-controller-01,192.168.24.11,192.168.122.11


"$BIN" image build >/dev/null 2>&1
"$BIN" lab up >/dev/null 2>&1
"$BIN" prepare >/dev/null 2>&1
local_a=$(timed "$BIN" create-vms -c "$NODE")
local_c=$(timed "$BIN" create-vms -c "$NODE")
local_d=$(timed "$BIN" status -c "$NODE")
"$BIN" destroy -c "$NODE" >/dev/null 2>&1
local_b=$(timed "$BIN" create-vms -c "$NODE")
"$BIN" destroy -c "$NODE" >/dev/null 2>&1

# The same daemon as a remote host.
trap 'remote_cleanup; cleanup' EXIT
remote_host "$TMP/work/benchl/lab/lab.yaml" 78 "$TMP"
cat > "$TMP/remote.yaml" <<EOF
apiVersion: kubicluster.io/v1alpha1
kind: Cluster
metadata: {name: benchr}
spec:
  workDir: $TMP/remote-work
  nodeDefaults: {memoryMiB: 1024}
  hypervisor: {mode: host, domainType: qemu, uri: "$URI", storagePool: benchr, storageDir: /var/lib/libvirt/images/benchr, image: $IMAGE}
  nodes:
    - {name: kubi-controller-01, role: controller, clusterIP: 192.168.24.11, hypervisorIP: 192.168.122.11}
EOF
remote() { env -u KUBICLUSTER_LAB -u KUBICLUSTER_NAME -u KUBICLUSTER_WORK_DIR -u KUBICLUSTER_IMAGE -u KUBICLUSTER_MEMORY_MIB HOME="$TMP" "$BIN" "$@" -f "$TMP/remote.yaml"; }
remote_a=$(timed remote create-vms)
remote_c=$(timed remote create-vms)
remote_d=$(timed remote status)
remote status >/dev/null 2>&1 || { echo "error: the remote VM is not healthy" >&2; remote status >&2 || true; exit 1; }
remote destroy >/dev/null 2>&1
remote_b=$(timed remote create-vms)
remote destroy >/dev/null 2>&1

template=$(( $(stat -c %s "$IMAGE") >> 20 ))
printf '%-52s %12s %14s %8s\n' "" "local (s)" "qemu+ssh (s)" "ratio"
row() { printf '%-52s %12s %14s %7sx\n' "$1" "$2" "$3" "$(ratio "$3" "$2")"; }
row "(a) create-vms, 1 VM, template (${template} MiB) uploaded" "$local_a" "$remote_a"
row "(b) create-vms, 1 VM, template already there" "$local_b" "$remote_b"
row "(c) create-vms, nothing to do" "$local_c" "$remote_c"
row "(d) status" "$local_d" "$remote_d"
