#!/usr/bin/env bash
# The root file system of the cgroup v2 test VM: Debian bookworm with its
# kernel, systemd (which mounts cgroup v2 only), podman and Python's pytest,
# from the machine's own Debian mirror. Kept once built (REBUILD=1 redoes
# it); about two minutes. Usage: vm-root.sh DIR
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/../podman.sh"
root=${1:?usage: vm-root.sh DIR}

if [ -z "${REBUILD:-}" ] && [ -f "$root/.complete" ]; then
  echo "VM root $root: kept (REBUILD=1 builds it again)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
rm -rf "$root"
mkdir -p "$root"
# A small initramfs: only what finds the root disk (virtio) and mounts it (ext4).
# Debian's default (MODULES=most, about 36 MB) is built twice during debootstrap
# (the kernel's postinst, then initramfs-tools' trigger), about 50 s each on a
# loaded machine, and the emulated VM spends seconds unpacking it at every boot.
# Both files are read by mkinitramfs and belong to no package, so dpkg keeps them.
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
echo "MODULES=list" >"$root/etc/initramfs-tools/conf.d/mothership-vm"
printf '%s\n' virtio_pci virtio_blk ext4 >"$root/usr/share/initramfs-tools/modules.d/mothership-vm"
packages=linux-image-amd64,initramfs-tools,systemd,systemd-sysv,udev,dbus,kmod,procps
packages+=,podman,runc,conmon,catatonit,netavark,aardvark-dns,iptables
packages+=,python3,python3-pytest,python3-yaml
echo "debootstrap the VM root from $(debian_mirror)"
if ! debootstrap --variant=minbase --cache-dir="$(debootstrap_cache)" --include="$packages" bookworm "$root" "$(debian_mirror)" >"$root.log" 2>&1; then
  tail -20 "$root.log" >&2
  exit 1
fi
rm -f "$root.log"

echo mothership-vm >"$root/etc/hostname"
echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$root/etc/fstab"
# No login prompt on the console: the test's output goes there.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
touch "$root/.complete"
echo "VM root $root: built"
