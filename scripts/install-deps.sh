#!/usr/bin/env bash
# Installs what Phyllome and its tests need on Debian 12: QEMU and the parts the test guest is built
# from (Debian packages), then the npm dependencies, which bring the pinned Node.js 24.
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-system-gui carries the virgl device modules; Mesa gives llvmpipe when there is no GPU.
# ovmf, swtpm and osinfo-db serve the guest planner (UEFI, TPM 2.0, OS knowledge); genisoimage makes
# cloud-init seeds and the tests' install media; zstd makes and reads export bundles. passt is
# user-mode networking without root; iproute2, dnsmasq-base and nftables make private networks
# (bridge, DHCP, NAT); the test guest carries qemu-guest-agent. libvirt (its daemon, QEMU driver and
# virsh) and xmllint (for virt-xml-validate) test the libvirt import and export.
# chromium is the browser the web UI's tests drive (test/e2e; never one Playwright downloads).
# openssl makes the daemon's self-signed HTTPS certificate when it listens beyond loopback.
# xvfb (an X server without a screen) and x11-utils (xwininfo) test VM windows on a host's screen.
packages=(qemu-system-x86 zstd fscrypt qemu-system-gui qemu-utils libgl1-mesa-dri libegl-mesa0 busybox-static linux-image-amd64 cpio kmod e2fsprogs binutils util-linux coreutils ovmf swtpm swtpm-tools osinfo-db genisoimage passt iproute2 dnsmasq-base nftables qemu-guest-agent libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libxml2-utils chromium openssl xvfb x11-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}: run this script as root, or apt-get install them" >&2
    exit 1
  fi
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v npm >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "npm is missing: apt-get install npm" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi
# Playwright drives Debian's Chromium: it must never fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# npm ci only when the lockfile changed since the last install.
if [ ! -x node_modules/.bin/vitest ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
