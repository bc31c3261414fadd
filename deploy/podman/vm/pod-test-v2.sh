#!/usr/bin/env bash
# `make pod-test-v2`: tests/test_pods.py on cgroup v2, in a QEMU VM (TCG: no
# KVM needed) booted with systemd from a Debian root (vm-root.sh, kept
# between runs). The image built here is loaded into the VM's container
# storage; a unit in the VM runs the tests and powers it off; the result is
# read back from the disk image. About two minutes once the root exists.
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/../podman.sh"
repo=$(cd "$PODMAN_DIR/../.." && pwd)
vm="$repo/build/vm"
root="$vm/root"

for tool in qemu-system-x86_64 mkfs.ext4 e2fsck debugfs; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install qemu-system-x86 e2fsprogs" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "the pod tests run podman as root" >&2; exit 1; }

# Each step's seconds, so a slow run says where its time went.
step_start=$SECONDS
step() { echo "[$(( SECONDS - step_start )) s] $*"; step_start=$SECONDS; }

bash "$PODMAN_DIR/image.sh"
step "image"
bash "$PODMAN_DIR/vm/vm-root.sh" "$root"
step "VM root"

qemu_pid=""
cleanup() {
  status=$?
  trap - EXIT INT TERM
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  podman pod rm -f "mothership-pause-$$" >/dev/null 2>&1 || true
  rm -rf "$vm/runroot" "$vm/image.tar" "$vm/disk.img"
  exit "$status"
}
trap cleanup EXIT INT TERM

# The image into the VM's storage. Its podman keeps its own database: the
# one written here names this machine's paths and would refuse to start.
storage="$root/var/lib/containers/storage"
vm_podman() { podman --root "$storage" --runroot "$vm/runroot" "$@"; }
vm_podman rmi -a -f >/dev/null 2>&1 || true
# With it, podman's pause image (every pod's infra container), made here if
# missing: the VM's podman (the same Debian version) would build it at its first
# `kube play`, under emulation.
pause_image() { podman images --format '{{.Repository}}:{{.Tag}}' --filter reference=localhost/podman-pause | head -1; }
if [ -z "$(pause_image)" ]; then
  podman pod create --name "mothership-pause-$$" >/dev/null
  podman pod rm -f "mothership-pause-$$" >/dev/null
fi
podman save -q -m -o "$vm/image.tar" "$IMAGE" $(pause_image)
vm_podman load -q -i "$vm/image.tar" >/dev/null
rm -f "$storage/libpod/bolt_state.db"
step "image loaded into the VM's storage"

# The tests and what they play, and the unit that runs them at boot.
dest="$root/opt/mothership"
rm -rf "$dest"
mkdir -p "$dest/tests" "$dest/deploy/podman"
cp "$repo/tests/pod_support.py" "$repo/tests/test_pods.py" "$dest/tests/"
cp -r "$PODMAN_DIR/pods" "$PODMAN_DIR/vm" "$PODMAN_DIR/containers.conf" "$dest/deploy/podman/"
cp "$PODMAN_DIR/vm/pytest.ini" "$dest/"
# inject runs here, from the same image: in the VM its container's Python alone takes a minute.
bash "$PODMAN_DIR/inject-shop.sh" "$IMAGE" >"$dest/shop-injected.yaml"
printf '%s\n' "IMAGE=$IMAGE" "POD_TEST_INJECTED=/opt/mothership/shop-injected.yaml" >"$dest/pod-test.env"
install -m 644 "$PODMAN_DIR/vm/mothership-pod-test.service" "$root/etc/systemd/system/"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/mothership-pod-test.service \
  "$root/etc/systemd/system/multi-user.target.wants/mothership-pod-test.service"

rm -f "$vm/disk.img"
truncate -s 4G "$vm/disk.img"
mkfs.ext4 -q -F -L mothership-vm -d "$root" "$vm/disk.img"
step "disk image"

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)
echo "booting the VM (QEMU TCG, cgroup v2); its console: $vm/console.log"
started=$(date +%s)
timeout "${VM_TIMEOUT:-1800}" qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 2048 \
  -display none -monitor none -no-reboot -nic none \
  -kernel "$kernel" -initrd "$initrd" \
  -append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.unified_cgroup_hierarchy=1 systemd.show_status=0" \
  -drive "file=$vm/disk.img,format=raw,if=virtio" \
  -serial "file:$vm/console.log" &
qemu_pid=$!
wait "$qemu_pid" || true
qemu_pid=""
echo "VM ran $(( $(date +%s) - started )) s"

# The VM powers off without unmounting: what it wrote last may be only in the
# ext4 journal, which debugfs does not read. Replay it first.
e2fsck -y -E journal_only "$vm/disk.img" >/dev/null 2>&1 || true
result=$(debugfs -R "cat /opt/mothership/result" "$vm/disk.img" 2>/dev/null || true)
debugfs -R "cat /opt/mothership/pytest.log" "$vm/disk.img" 2>/dev/null || true
if [ -z "$result" ]; then
  echo "the tests did not run in the VM; the end of its console:" >&2
  tail -40 "$vm/console.log" >&2
  exit 1
fi
exit "$result"
