#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine as root: installs what it needs, then runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec npm test --silent -- "$@"
