#!/usr/bin/env bash
# Builds the small Linux test guest from Debian packages: the distribution kernel, a busybox initramfs
# that prints a fixed ready line on the serial console and powers off on the ACPI power button, and a
# small ext4 data disk. Cached: a second run with the same kernel and script version does nothing.
set -euo pipefail

SCRIPT_VERSION=5
READY_LINE=PHYLLOME-GUEST-READY
out=${1:-${PHYLLOME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phyllome}/test-guest}
modules=(virtio_pci virtio_blk crc32c_generic ext4 button evdev virtio_net virtio_gpu)

need() {
  local missing=()
  command -v busybox >/dev/null || [ -x /bin/busybox ] || missing+=(busybox-static)
  ls /boot/vmlinuz-* >/dev/null 2>&1 || missing+=(linux-image-amd64)
  command -v cpio >/dev/null || missing+=(cpio)
  command -v depmod >/dev/null || missing+=(kmod)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (install them as root with apt-get)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}
need

kver=$(ls /lib/modules | sort -V | tail -n 1)
[ -f "/boot/vmlinuz-$kver" ] || { echo "no /boot/vmlinuz-$kver" >&2; exit 1; }
stamp="kernel=$kver script=$SCRIPT_VERSION"

mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then
  echo "$out (cached)"
  exit 0
fi

work=$(mktemp -d "$out.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,mnt,tmp,var/log,var/run,etc/acpi/PWRF,lib/modules/"$kver"}
cp "$(command -v busybox || echo /bin/busybox)" "$root/bin/busybox"

# The wanted modules and everything they depend on, from modules.dep.
declare -A seen=()
add_module() {
  local path
  path=$(modinfo -k "$kver" -n "$1" 2>/dev/null) || return 0
  case "$path" in /*) ;; *) return 0 ;; esac # built in
  local rel=${path#/lib/modules/$kver/}
  [ -n "${seen[$rel]:-}" ] && return 0
  seen[$rel]=1
  mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
  cp "$path" "$root/lib/modules/$kver/$rel"
  local dep
  for dep in $(modinfo -k "$kver" -F depends "$1" | tr ',' ' '); do add_module "$dep"; done
}
for m in "${modules[@]}"; do add_module "$m"; done
cp /lib/modules/"$kver"/modules.{builtin,builtin.modinfo,order} "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver"

cat >"$root/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
sync
poweroff -f
ACPI
chmod +x "$root/etc/acpi/PWRF/00000080"

cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${modules[*]}; do modprobe \$m 2>/dev/null; done
acpid -c /etc/acpi -l /var/log/acpid.log
if [ -b /dev/vda ]; then
  mount -o ro /dev/vda /mnt && echo "disk: \$(cat /mnt/hello.txt)" >/dev/ttyS0
fi
# With a virtio GPU: what the kernel negotiated (+virgl means 3D) and the render nodes it made.
if [ -e /dev/dri/card0 ]; then
  echo "gpu: \$(dmesg | grep -o 'features: .*' | head -n 1)" >/dev/ttyS0
  echo "render: \$(ls /dev/dri | tr '\\n' ' ')" >/dev/ttyS0
fi
echo $READY_LINE >/dev/ttyS0
while true; do
  setsid cttyhack sh -l </dev/ttyS0 >/dev/ttyS0 2>&1
done
INIT
chmod +x "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.img"
cp "/boot/vmlinuz-$kver" "$work/vmlinuz"
mkdir -p "$work/disk"
echo "phyllome test disk" >"$work/disk/hello.txt"
mkfs.ext4 -q -F -L phyllome-test -d "$work/disk" "$work/disk.ext4" 16M
echo "$stamp" >"$work/stamp"

# Swap the finished guest into place: readers see the old one or the new one, never half.
mkdir -p "$work/final"
mv "$work/vmlinuz" "$work/initrd.img" "$work/disk.ext4" "$work/stamp" "$work/final/"
rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$work/final" "$out"
rm -rf "$out.old"
echo "$out"
ls -l "$out" | awk 'NR>1 {print "  " $9 ": " $5 " bytes"}'
