#!/usr/bin/env bash
# Runs every benchmark under bench/ and prints each figure beside its target. Not part
# of the tests. Installs wrk (the HTTP load client) and dnsmasq (a fast loopback DNS
# server for the verification figure) from Debian when they are missing.
set -euo pipefail # this script stops at its first failing command (toolchain.sh leaves options alone)
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
source "$ATMOS_ROOT/scripts/deps.sh"
cd "$ATMOS_ROOT"
atmos_prepare
atmos_ensure_apt wrk dnsmasq-base
exec node bench/src/run.ts "$@"
