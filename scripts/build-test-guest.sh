#!/usr/bin/env bash
# Builds the small Linux test guest from Debian packages: the distribution kernel, a busybox initramfs
# that prints a fixed ready line on the serial console and powers off on the ACPI power button, and a
# small ext4 data disk. Cached: a second run with the same kernel and script version does nothing.
#
# Usage: scripts/build-test-guest.sh [OUTDIR]
# OUTDIR gets vmlinuz, initrd.img, disk.ext4 (hello.txt: "phyllome test disk"), vmlinux (optional, see
# below) and stamp. The first line of stdout is OUTDIR (with " (cached)" when nothing was built), then
# the file sizes. Boot: -kernel OUTDIR/vmlinuz -initrd OUTDIR/initrd.img
#   -append 'console=ttyS0 panic=-1 quiet cryptomgr.notests mitigations=off'
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin # depmod, mkfs.ext4 for a non-root user

SCRIPT_VERSION=12
READY_LINE=PHYLLOME-GUEST-READY
out=${1:-${PHYLLOME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phyllome}/test-guest}
out=${out%/}
# Loaded in this order by the guest's /init; a module that is missing or built in is skipped.
# crc32c_generic first: ext4 wants crc32c and busybox modprobe does not follow softdeps.
modules=(virtio_pci virtio_blk crc32c_generic ext4 button evdev virtio_net)
# Carried too, but loaded only when the guest has the device (by its virtio modalias): the DRM stack
# costs most of a second of boot under TCG. efivarfs only under UEFI; virtio_console for the guest agent.
on_demand=(virtio_gpu efivarfs virtio_console)

die() {
  echo "build-test-guest: $*" >&2
  exit 1
}

installed() { [ "$(dpkg-query -W -f '${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

# The newest installed kernel that has both its image and its modules.
newest_kernel() {
  local v best=
  for v in /boot/vmlinuz-*; do
    [ -f "$v" ] || continue
    v=${v#/boot/vmlinuz-}
    [ -f "/lib/modules/$v/modules.dep" ] || continue
    if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n 1)" = "$v" ]; then best=$v; fi
  done
  echo "$best"
}

install_missing() {
  [ $# -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages: $* (as root: apt-get install --no-install-recommends $*)"
  echo "build-test-guest: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null; } ||
    die "could not install $*"
}

missing=()
if command -v dpkg-query >/dev/null; then
  installed busybox-static || missing+=(busybox-static) # a dynamic busybox cannot run in the initramfs
  [ -n "$(newest_kernel)" ] || missing+=(linux-image-amd64)
else
  command -v busybox >/dev/null || die "no busybox (static) found"
fi
command -v cpio >/dev/null || missing+=(cpio)
{ command -v depmod && command -v modinfo; } >/dev/null || missing+=(kmod)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
command -v flock >/dev/null || missing+=(util-linux)
[ -x /usr/sbin/qemu-ga ] || missing+=(qemu-guest-agent) # the guest agent, with its libraries
command -v xz >/dev/null || missing+=(xz-utils) # Debian's kernel image is xz inside: see vmlinux below
install_missing "${missing[@]}"

kver=$(newest_kernel)
[ -n "$kver" ] || die "no kernel with both /boot/vmlinuz-<version> and /lib/modules/<version>"
[ -r "/boot/vmlinuz-$kver" ] || die "/boot/vmlinuz-$kver is not readable (run as root once to fill the cache)"
moddir=/lib/modules/$kver

# Modules compressed by the kernel package are unpacked at build time (busybox modprobe loads plain .ko).
missing=()
for m in "${modules[@]}" "${on_demand[@]}"; do
  path=$(modinfo -k "$kver" -n "$m" 2>/dev/null) || continue
  case "$path" in
  *.ko.zst) command -v zstd >/dev/null || missing+=(zstd) ;;
  *.ko.xz) command -v xz >/dev/null || missing+=(xz-utils) ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  install_missing "${missing[@]}"
fi

busybox=/bin/busybox
[ -x "$busybox" ] || busybox=$(command -v busybox)
stamp="kernel=$kver script=$SCRIPT_VERSION"

summary() {
  local f lines=$1
  for f in vmlinuz initrd.img disk.ext4 vmlinux; do
    [ -f "$out/$f" ] && lines+=$'\n'"  $f: $(stat -c %s "$out/$f") bytes"
  done
  printf '%s\n' "$lines" # one write, so `| head -n 1` cannot cut the script off with SIGPIPE
}

# Optional extra: the same kernel uncompressed (ELF with a PVH entry note). QEMU boots it with -kernel
# straight into 64-bit code, skipping the bzImage's xz decompression, which under TCG costs ~5-7 s of a
# ~11 s boot. UEFI boots need vmlinuz (EFI stub). Written sparse: most of its 60+ MiB is zeros.
extract_vmlinux() {
  local img=$1 dest=$2 magic tool off
  grep -qx 'CONFIG_PVH=y' "/boot/config-$kver" 2>/dev/null || return 0
  for magic in '\xfd7zXZ\x00:xz' '\x28\xb5\x2f\xfd:zstd' '\x1f\x8b\x08:gzip'; do
    tool=${magic##*:}
    command -v "$tool" >/dev/null || continue
    off=$(LC_ALL=C grep -obUaP -m 1 "${magic%:*}" "$img" | head -n 1 | cut -d: -f1) || true
    [ -n "$off" ] || continue
    # Trailing bytes after the compressed stream make the tools complain: the ELF check below decides.
    tail -c +$((off + 1)) "$img" | "$tool" -d -c 2>/dev/null |
      dd of="$dest" bs=64K iflag=fullblock conv=sparse status=none || true
    [ "$(head -c 4 "$dest" 2>/dev/null | od -A n -t x1 | tr -d ' ')" = 7f454c46 ] && return 0
  done
  rm -f "$dest"
  echo "build-test-guest: could not extract an uncompressed vmlinux (optional, skipped)" >&2
}

mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock -w 900 9 || die "timed out waiting for $out.lock"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then
  summary "$out (cached)"
  exit 0
fi

# Holding the lock, any other build folder is left over from a killed run.
rm -rf "$out".build.* "$out.old"
work=$(mktemp -d "$out.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,mnt,tmp,root,var/log,var/run,etc/acpi/PWRF,lib/modules/"$kver"}
cp "$busybox" "$root/bin/busybox"

# The wanted modules and everything they depend on: modules.dep lists each module's full dependency set.
declare -A seen=()
add_file() {
  local rel=$1 dest
  [ -n "${seen[$rel]:-}" ] && return 0
  seen[$rel]=1
  dest=$root/lib/modules/$kver/${rel%.*}
  mkdir -p "$(dirname "$dest")"
  case "$rel" in
  *.ko.zst) zstd -q -d -c "$moddir/$rel" >"$dest.ko" ;;
  *.ko.xz) xz -d -c "$moddir/$rel" >"$dest.ko" ;;
  *.ko.gz) gzip -d -c "$moddir/$rel" >"$dest.ko" ;;
  *.ko) cp "$moddir/$rel" "$root/lib/modules/$kver/$rel" ;;
  esac
}
for m in "${modules[@]}" "${on_demand[@]}"; do
  path=$(modinfo -k "$kver" -n "$m" 2>/dev/null) || continue
  case "$path" in "$moddir"/*) ;; *) continue ;; esac # built in
  rel=${path#"$moddir"/}
  line=$(awk -F': ?' -v m="$rel" '$1 == m { print $2 "."; exit }' "$moddir/modules.dep")
  [ -n "$line" ] || die "$rel is not in $moddir/modules.dep"
  read -ra deps <<<"${line%.}"
  for f in "${deps[@]}" "$rel"; do add_file "$f"; done
done
cp "$moddir/modules.builtin" "$moddir/modules.builtin.modinfo" "$root/lib/modules/$kver/"
(cd "$root/lib/modules/$kver" && find kernel -name '*.ko' | LC_ALL=C sort >modules.order)
depmod -b "$root" "$kver"

# The QEMU guest agent is dynamically linked: it travels with the libraries ldd names.
cp /usr/sbin/qemu-ga "$root/usr/sbin/"
for lib in $(ldd /usr/sbin/qemu-ga | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cat >"$root/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
sync
poweroff -f
ACPI
chmod +x "$root/etc/acpi/PWRF/00000080"

# udhcpc's hook: configure the lease and say it on serial (the network tests read "net: eth0 IP").
mkdir -p "$root/etc/udhcpc" "$root/www"
cat >"$root/etc/udhcpc/script" <<'DHCP'
#!/bin/sh
case "$1" in
deconfig) ifconfig "$interface" 0.0.0.0 up ;;
bound | renew)
  ifconfig "$interface" "$ip" netmask "$subnet" up
  while route del default 2>/dev/null; do :; done
  for r in $router; do route add default gw "$r" dev "$interface"; done
  echo "net: $interface $ip" >/dev/ttyS0
  ;;
esac
DHCP
chmod +x "$root/etc/udhcpc/script"
echo "phyllome guest web" >"$root/www/index.html"

cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${modules[*]}; do modprobe \$m 2>/dev/null; done
for a in \$(cat /sys/bus/virtio/devices/*/modalias 2>/dev/null); do modprobe \$a 2>/dev/null; done
# ACPI power button (QMP system_powerdown): sync and power off.
acpid -c /etc/acpi -l /var/log/acpid.log
if [ -b /dev/vda ]; then
  mount -o ro /dev/vda /mnt && echo "disk: \$(cat /mnt/hello.txt)" >/dev/ttyS0
fi
# With a virtio GPU: what the kernel negotiated (+virgl means 3D) and the render nodes it made.
if [ -e /dev/dri/card0 ]; then
  echo "gpu: \$(dmesg | grep -o 'features: .*' | head -n 1)" >/dev/ttyS0
  echo "render: \$(ls /dev/dri | tr '\\n' ' ')" >/dev/ttyS0
fi
# Firmware and TPM as the guest sees them: the guest-profile tests read these lines.
if [ -d /sys/firmware/efi ]; then
  modprobe efivarfs 2>/dev/null
  mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
  sb=\$(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | awk '{print \$NF}')
  echo "efi: secureboot=\${sb:-none}" >/dev/ttyS0
fi
if [ -e /sys/class/tpm/tpm0 ]; then
  echo "tpm: tpm0 version \$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)" >/dev/ttyS0
fi
# With a NIC: a web server on port 80, and DHCP before the ready line so that nothing prints later
# (bounded: without a DHCP server, it goes on trying in the background, its pid in /var/run/udhcpc.pid).
if [ -d /sys/class/net/eth0 ]; then
  ip link set lo up
  httpd -p 80 -h /www
  udhcpc -i eth0 -s /etc/udhcpc/script -n -q -t 3 -T 1 >/dev/null 2>&1 ||
    udhcpc -i eth0 -s /etc/udhcpc/script -q -T 1 -A 2 -p /var/run/udhcpc.pid >/dev/null 2>&1 &
fi
# The guest agent on its virtio-serial port (no udev here to name /dev/virtio-ports/*); the kernel
# argument phyllome.noagent leaves it out, for tests of what works without one.
grep -qw phyllome.noagent /proc/cmdline || for p in /sys/class/virtio-ports/*; do
  [ "\$(cat \$p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && qemu-ga -d -m virtio-serial -p /dev/\${p##*/} -f /tmp/qga.pid -t /tmp
done
echo $READY_LINE >/dev/ttyS0
export HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin
cd /root
while true; do
  setsid cttyhack sh -l </dev/ttyS0 >/dev/ttyS0 2>&1
done
INIT
chmod +x "$root/init"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9 -n) >"$work/initrd.img"
cp "/boot/vmlinuz-$kver" "$work/vmlinuz"
extract_vmlinux "$work/vmlinuz" "$work/vmlinux"
mkdir -p "$work/disk"
echo "phyllome test disk" >"$work/disk/hello.txt"
# A file made first: given a size, mkfs prints "Creating regular file" on stdout, whose first line is ours.
truncate -s 16M "$work/disk.ext4"
mkfs.ext4 -q -F -L phyllome-test -d "$work/disk" "$work/disk.ext4" >&2
echo "$stamp" >"$work/stamp"

# Swap the finished guest into place: readers see the old one or the new one, never half.
mkdir -p "$work/final"
mv "$work/vmlinuz" "$work/initrd.img" "$work/disk.ext4" "$work/stamp" "$work/final/"
[ -f "$work/vmlinux" ] && mv "$work/vmlinux" "$work/final/"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$work/final" "$out"
rm -rf "$out.old"
summary "$out"
