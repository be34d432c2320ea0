#!/bin/sh
# kubicluster-identity: apply the identity the hypervisor hands this VM through QEMU fw_cfg
# (hostname, static addresses, root's authorized key, the SSH host key kubicluster generated and
# pinned). Runs on every boot before networking and ssh, so the hypervisor stays the source of truth.
set -eu
D=/sys/firmware/qemu_fw_cfg/by_name/opt/io.kubicluster
modprobe qemu_fw_cfg 2>/dev/null || true
if [ ! -r "$D/identity/raw" ]; then
    echo "kubicluster-identity: no identity from the hypervisor; keeping the template's" >/dev/ttyS0
    exit 0
fi
# Grow the root partition and filesystem when the VM's disk is larger than the template's
# (spec.hypervisor.diskGiB). Online: sfdisk rewrites the table, partx tells the kernel the new
# size, resize2fs grows the mounted ext4. Does nothing when there is no room after the partition.
grow_root() {
    src=$(findmnt -no SOURCE /)
    part=${src#/dev/}
    disk=$(basename "$(readlink -f "/sys/class/block/$part/..")")
    nr=$(cat "/sys/class/block/$part/partition")
    end=$(($(cat "/sys/class/block/$part/start") + $(cat "/sys/class/block/$part/size")))
    total=$(cat "/sys/block/$disk/size")
    [ $((total - end)) -gt 2048 ] || return 0
    echo ",+" | sfdisk --quiet --no-reread --no-tell-kernel -N "$nr" "/dev/$disk" &&
        partx --update --nr "$nr" "/dev/$disk" &&
        resize2fs "$src" >/dev/null 2>&1 &&
        echo "kubicluster-identity: grew $src to $((total / 2048)) MiB" >/dev/ttyS0
}
get() { sed -n "s/^$1=//p" "$D/identity/raw" | head -n 1; }
name=$(get HOSTNAME)
echo "$name" >/etc/hostname
hostname "$name"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$name" >/etc/hosts
cat >/etc/network/interfaces.d/kubicluster <<EOT
auto eth0
iface eth0 inet static
    address $(get ETH0_ADDRESS)
    gateway $(get ETH0_GATEWAY)

auto eth1
iface eth1 inet static
    address $(get ETH1_ADDRESS)
EOT
echo "nameserver $(get DNS)" >/etc/resolv.conf
install -d -m 0700 /root/.ssh
get AUTHORIZED_KEY >/root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
install -m 0600 "$D/ssh_host_ed25519_key/raw" /etc/ssh/ssh_host_ed25519_key
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key >/etc/ssh/ssh_host_ed25519_key.pub
grow_root || echo "kubicluster-identity: could not grow the root filesystem" >/dev/ttyS0
echo "kubicluster-identity: $name $(get ETH0_ADDRESS) $(get ETH1_ADDRESS)" >/dev/ttyS0
