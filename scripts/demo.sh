#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine as root: install, build, start phyllomed with a small demo
# Linux VM booted. Run it again any time: what exists is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run --silent build
guest=$(bash scripts/build-test-guest.sh | head -n 1 | sed 's/ (cached)$//')
phyllome=bin/phyllome

# The uncompressed kernel, when the builder could make it, boots in half the time under TCG.
kernel=$guest/vmlinux
[ -f "$kernel" ] || kernel=$guest/vmlinuz
if ! $phyllome status demo >/dev/null 2>&1; then
  $phyllome create demo --memory 256M --kernel "$kernel" --initrd "$guest/initrd.img" \
    --append 'console=ttyS0 panic=-1 quiet' --disk "$guest/disk.ext4:ro"
fi
state=$($phyllome status demo --json | sed -n 's/^  "state": "\(.*\)",$/\1/p')
[ "$state" = running ] || [ "$state" = paused ] || $phyllome start demo

# Wait (bounded) for the guest's ready line in its serial log.
if [ -n "${PHYLLOME_HOME:-}" ]; then home=$PHYLLOME_HOME
elif [ "$(id -u)" -eq 0 ]; then home=/var/lib/phyllome
else home=${XDG_DATA_HOME:-$HOME/.local/share}/phyllome; fi
for _ in $(seq 1 120); do
  grep -q PHYLLOME-GUEST-READY "$home/vms/demo/serial.log" 2>/dev/null && break
  sleep 1
done
echo
$phyllome list
echo
echo "The demo VM is up. Try:"
echo "  $phyllome console demo      # serial console; detach with Ctrl-]"
echo "  $phyllome pause demo; $phyllome resume demo"
echo "  $phyllome stop demo         # ACPI power button"
