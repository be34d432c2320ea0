#!/usr/bin/env bash
# Benchmark: VM creation, measured in one run (root; a lab = private libvirtd in a netns).
#  (a) disk clone: a qcow2 overlay on the template (what kubicluster does, through a libvirt
#      volume) vs a full copy (what the original did), for the template and a 4x larger image;
#  (b) boot to SSH: 1 VM vs 3 VMs created in parallel (the original had to go one by one);
#  (c) create-vms again with nothing changed;
#  (d) boot to the serial console's login prompt: the same image in plain QEMU (no libvirt, no
#      identity, no kubicluster; same machine, CPU, memory and NICs, networks left unconfigured)
#      vs the kubicluster VM of (b), and the goal: kubicluster <= 1.2x raw.
# Usage: bench/create-vms.sh   (needs `make lab-deps`; builds the image if it is missing)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=bench KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE KUBICLUSTER_MEMORY_MIB=1024


"$BIN" image build >/dev/null 2>&1

echo "(a) disk clone: overlay vs full copy"
BIG=$TMP/big.qcow2
qemu-img convert -O qcow2 "$IMAGE" "$BIG"
size=$(stat -c %s "$IMAGE")
qemu-io -f qcow2 -c "write -P 0x5a 1G $((size * 3))" "$BIG" >/dev/null
printf '  %-22s %10s %12s %12s %8s\n' image "size MiB" "copy s" "overlay s" ratio
for img in "$IMAGE" "$BIG"; do
  sync
  c=$(timed cp --sparse=always "$img" "$TMP/copy.qcow2")
  o=$(timed qemu-img create -q -f qcow2 -F qcow2 -b "$img" "$TMP/overlay.qcow2")
  printf '  %-22s %10d %12s %12s %7sx\n' "$(basename "$img")" $(( $(stat -c %s "$img") >> 20 )) "$c" "$o" "$(ratio "$c" "$o")"
  rm -f "$TMP/copy.qcow2" "$TMP/overlay.qcow2"
done

echo "(b) boot to SSH: 1 VM vs 3 VMs in parallel (TCG: $(grep -qE ' (vmx|svm)' /proc/cpuinfo && echo maybe kvm || echo emulated))"
"$BIN" lab up >/dev/null 2>&1
# prepare asks the fresh daemon whether it can run the guests: libvirt probes its emulator then
# (seconds under TCG), before any VM starts.
prep=$(timed "$BIN" prepare)
echo "  prepare on the fresh lab daemon (networks, pool, key, libvirt's emulator probe): ${prep} s"
# The console log is polled for the login prompt while create-vms runs (the same marker as (d)).
CONSOLE=$TMP/work/bench/vms/kubi-controller-01/console.log
t0=$(now)
"$BIN" create-vms -c kubi-controller-01,192.168.24.11,192.168.122.11 >/dev/null 2>&1 &
cv=$!
login_kubi=""
while kill -0 $cv 2>/dev/null || [ -z "$login_kubi" ]; do
  if [ -z "$login_kubi" ] && grep -q "login:" "$CONSOLE" 2>/dev/null; then login_kubi=$(secs "$t0" "$(now)"); fi
  if ! kill -0 $cv 2>/dev/null && [ -z "$login_kubi" ]; then login_kubi="n/a"; fi
  sleep 0.2
done
wait $cv
one=$(secs "$t0" "$(now)")
"$BIN" destroy -c kubi-controller-01,192.168.24.11,192.168.122.11 >/dev/null 2>&1
three=$(timed "$BIN" create-vms)
echo "  1 VM: ${one} s   3 VMs: ${three} s   3 VMs / 1 VM: $(ratio "$three" "$one")x (one after another would be ~3x)"

echo "(c) create-vms again, nothing changed"
again=$(timed "$BIN" create-vms)
echo "  ${again} s   (first run / re-run: $(ratio "$three" "$again")x)"
"$BIN" destroy >/dev/null 2>&1

echo "(d) boot to the login prompt on the serial console, 1 VM: plain QEMU vs kubicluster (same image)"
RAW=$TMP/raw.qcow2
qemu-img create -q -f qcow2 -F qcow2 -b "$IMAGE" "$RAW"
t0=$(now)
# restrict=on: the guest's user-mode NICs reach nothing (and are left unconfigured anyway).
qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp 1 -m 1024 -display none -nodefaults \
  -drive file="$RAW",if=virtio,format=qcow2 \
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0 \
  -netdev user,id=n1,restrict=on -device virtio-net-pci,netdev=n1 \
  -device virtio-rng-pci -serial file:"$TMP/raw-console.log" &
q=$!
login_raw="n/a"
for _ in $(seq 1 1500); do
  if grep -q "login:" "$TMP/raw-console.log" 2>/dev/null; then login_raw=$(secs "$t0" "$(now)"); break; fi
  sleep 0.2
done
kill $q 2>/dev/null; wait $q 2>/dev/null || true
echo "  plain QEMU: ${login_raw} s   kubicluster VM (create-vms of (b), from its start): ${login_kubi} s   kubicluster / raw: $(awk -v a="$login_kubi" -v b="$login_raw" 'BEGIN { printf "%.2f", a / b }')x (goal <= 1.2x); create-vms to SSH verified: ${one} s"
