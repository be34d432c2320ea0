#!/bin/sh
# kubicluster-identity: apply the identity the hypervisor hands this VM through QEMU fw_cfg
# (hostname, static addresses, root's authorized key, the SSH host key kubicluster generated and
# pinned). Runs on every boot before networking and ssh, so the hypervisor stays the source of truth.
# It starts as few processes as it can: in an emulated guest at boot each one costs a few hundred
# milliseconds (the first version started about forty and took 20 s of a 60 s boot under TCG), so
# the identity and sysfs are read with the shell's own `read`, and files written by redirection.
set -eu
D=/sys/firmware/qemu_fw_cfg/by_name/opt/io.kubicluster
[ -d /sys/firmware/qemu_fw_cfg ] || modprobe qemu_fw_cfg 2>/dev/null || true
if [ ! -r "$D/identity/raw" ]; then
    echo "kubicluster-identity: no identity from the hypervisor; keeping the template's" >/dev/ttyS0
    # networking.service is masked in this image: a template's own static addresses (a legacy
    # template made from a VM of this image, re-addressed in /etc/network/interfaces.d) come up
    # here. The pristine image has none there and starts nothing.
    for f in /etc/network/interfaces.d/*; do
        if [ -e "$f" ]; then
            mkdir -p /run/network && ifup -a --read-environment || true
            break
        fi
    done
    exit 0
fi
# KEY=value lines; the first value of a key counts.
HOSTNAME='' ETH0_ADDRESS='' ETH0_GATEWAY='' ETH1_ADDRESS='' DNS='' AUTHORIZED_KEY=''
while IFS= read -r line || [ -n "$line" ]; do
    v=${line#*=}
    case $line in
        HOSTNAME=*) [ -n "$HOSTNAME" ] || HOSTNAME=$v ;;
        ETH0_ADDRESS=*) [ -n "$ETH0_ADDRESS" ] || ETH0_ADDRESS=$v ;;
        ETH0_GATEWAY=*) [ -n "$ETH0_GATEWAY" ] || ETH0_GATEWAY=$v ;;
        ETH1_ADDRESS=*) [ -n "$ETH1_ADDRESS" ] || ETH1_ADDRESS=$v ;;
        DNS=*) [ -n "$DNS" ] || DNS=$v ;;
        AUTHORIZED_KEY=*) [ -n "$AUTHORIZED_KEY" ] || AUTHORIZED_KEY=$v ;;
    esac
done <"$D/identity/raw"

# Grow the root partition and filesystem when the VM's disk is larger than the template's
# (spec.hypervisor.diskGiB). Online: sfdisk rewrites the table, partx tells the kernel the new
# size, resize2fs grows the mounted ext4. Does nothing (and starts nothing) when there is no
# room after the partition, as on every boot after the first.
grow_root() {
    src=''
    while read -r dev mnt rest; do
        if [ "$mnt" = / ] && [ "${dev#/dev/}" != "$dev" ]; then src=$dev; fi
    done </proc/mounts
    # /dev/root names no block device: find it by the template's label (one process, rarely).
    [ "$src" != /dev/root ] || src=$(readlink -f /dev/disk/by-label/kubiroot)
    [ -n "$src" ] || return 0
    part=${src#/dev/}
    disk=''
    for d in /sys/block/*/"$part"; do
        [ -e "$d" ] || continue
        disk=${d#/sys/block/}
        disk=${disk%%/*}
    done
    [ -n "$disk" ] || return 0
    read -r nr <"/sys/class/block/$part/partition"
    read -r start <"/sys/class/block/$part/start"
    read -r size <"/sys/class/block/$part/size"
    read -r total <"/sys/block/$disk/size"
    [ $((total - start - size)) -gt 2048 ] || return 0
    echo ",+" | sfdisk --quiet --no-reread --no-tell-kernel -N "$nr" "/dev/$disk" &&
        partx --update --nr "$nr" "/dev/$disk" &&
        resize2fs "$src" >/dev/null 2>&1 &&
        echo "kubicluster-identity: grew $src to $((total / 2048)) MiB" >/dev/ttyS0
}

echo "$HOSTNAME" >/etc/hostname
echo "$HOSTNAME" >/proc/sys/kernel/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$HOSTNAME" >/etc/hosts
# The addresses, set here with one `ip` process; ifupdown's networking.service is masked in the
# image (systemd brings up lo itself): `ifup -a` (run-parts, hooks, a `systemctl` per interface)
# held ssh and the login prompt for 7-8 s of a 23 s boot under TCG, 5 s of it for lo alone.
# `replace`: a re-run is a no-op. The same addresses are kept in ifupdown's form too, for a
# template made from this VM (above: brought up when no identity comes).
cat >/etc/network/interfaces.d/kubicluster <<EOT
auto eth0
iface eth0 inet static
    address $ETH0_ADDRESS
    gateway $ETH0_GATEWAY

auto eth1
iface eth1 inet static
    address $ETH1_ADDRESS
EOT
ip -force -batch - <<EOT
addr replace $ETH0_ADDRESS dev eth0
link set dev eth0 up
route replace default via $ETH0_GATEWAY dev eth0
addr replace $ETH1_ADDRESS dev eth1
link set dev eth1 up
EOT
echo "nameserver $DNS" >/etc/resolv.conf
[ -d /root/.ssh ] || mkdir -m 0700 /root/.ssh
umask 077
echo "$AUTHORIZED_KEY" >/root/.ssh/authorized_keys
# The host key: copied by redirection (umask 077: 0600), its public half derived by ssh-keygen.
cat "$D/ssh_host_ed25519_key/raw" >/etc/ssh/ssh_host_ed25519_key
umask 022
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key >/etc/ssh/ssh_host_ed25519_key.pub
grow_root || echo "kubicluster-identity: could not grow the root filesystem" >/dev/ttyS0
echo "kubicluster-identity: $HOSTNAME $ETH0_ADDRESS $ETH1_ADDRESS" >/dev/ttyS0
