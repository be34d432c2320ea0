#!/bin/bash
# Build kubicluster's Debian 12 template image (run by `kubicluster image build`, as root).
# Inputs (environment): OUT (qcow2 to write), WORK (scratch dir), FILES (dir with the identity
# script and unit), SOURCES (apt sources file for mmdebstrap), SIZE_GIB, KERNEL_ARGS (added to
# the kernel line; may be empty).
# Recipe: mmdebstrap minbase into a directory -> ext4 made from that directory straight into the
# partition of a raw disk -> extlinux + syslinux MBR -> compressed qcow2.
set -euo pipefail
: "${OUT:?}" "${WORK:?}" "${FILES:?}" "${SOURCES:?}" "${SIZE_GIB:=8}"
ROOT=$WORK/root
RAW=$WORK/disk.raw
MNT=$WORK/mnt
OFFSET=$((1024 * 1024))
cleanup() { mountpoint -q "$MNT" && umount "$MNT"; true; }
trap cleanup EXIT

rm -rf "$ROOT" "$RAW" "$MNT"
mkdir -p "$MNT"

echo "image: debootstrapping bookworm (minbase) with mmdebstrap"
mmdebstrap --quiet --variant=minbase --mode=root --format=directory \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --include=systemd-sysv,udev,dbus,kmod,linux-image-cloud-amd64,initramfs-tools,openssh-server,fdisk,ifupdown,iproute2,iputils-ping,netbase,procps,iptables,conntrack,socat,keepalived,haproxy \
  --customize-hook='install -m 0755 "'"$FILES"'/kubicluster-identity.sh" "$1/usr/local/sbin/kubicluster-identity"' \
  --customize-hook='install -m 0644 "'"$FILES"'/kubicluster-identity.service" "$1/etc/systemd/system/kubicluster-identity.service"' \
  --customize-hook='mkdir -p "$1/etc/systemd/system/sysinit.target.wants" && ln -sf /etc/systemd/system/kubicluster-identity.service "$1/etc/systemd/system/sysinit.target.wants/"' \
  --customize-hook='for u in ifupdown-pre.service networking.service e2scrub_reap.service haproxy.service; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done' \
  --customize-hook='printf "LABEL=kubiroot / ext4 defaults,errors=remount-ro 0 1\n" >"$1/etc/fstab"' \
  --customize-hook='printf "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n" >"$1/etc/network/interfaces"' \
  --customize-hook='printf "virtio_pci\nvirtio_blk\nvirtio_net\next4\n" >>"$1/etc/initramfs-tools/modules"' \
  --customize-hook='echo qemu_fw_cfg >"$1/etc/modules-load.d/kubicluster.conf"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='printf "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n" >"$1/etc/ssh/sshd_config.d/kubicluster.conf"' \
  --customize-hook='echo kubicluster-template >"$1/etc/hostname"' \
  --customize-hook=': >"$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
  --customize-hook='chroot "$1" update-initramfs -u -k all >/dev/null' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  bookworm "$ROOT" "$SOURCES"

echo "image: writing the root filesystem into a ${SIZE_GIB} GiB disk"
truncate -s "${SIZE_GIB}G" "$RAW"
echo 'start=2048, type=83, bootable' | sfdisk --quiet "$RAW"
SECTORS=$(( (SIZE_GIB * 1024 * 1024 * 1024 - OFFSET) / 1024 ))
mkfs.ext4 -q -F -L kubiroot -O ^64bit,^metadata_csum -E offset=$OFFSET -d "$ROOT" "$RAW" "${SECTORS}k"

echo "image: installing extlinux"
mount -o loop,offset=$OFFSET "$RAW" "$MNT"
KERNEL=$(cd "$MNT/boot" && ls vmlinuz-* | sort -V | tail -n 1)
INITRD=$(cd "$MNT/boot" && ls initrd.img-* | sort -V | tail -n 1)
mkdir -p "$MNT/boot/extlinux"
cat >"$MNT/boot/extlinux/extlinux.conf" <<EOT
DEFAULT kubicluster
TIMEOUT 0
PROMPT 0
LABEL kubicluster
  LINUX /boot/$KERNEL
  INITRD /boot/$INITRD
  APPEND root=LABEL=kubiroot ro console=ttyS0 net.ifnames=0 quiet${KERNEL_ARGS:+ $KERNEL_ARGS}
EOT
extlinux --install "$MNT/boot/extlinux" >/dev/null 2>&1
umount "$MNT"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$RAW" bs=440 count=1 conv=notrunc status=none

echo "image: compressing to qcow2"
qemu-img convert -c -O qcow2 "$RAW" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
rm -rf "$ROOT" "$RAW"
