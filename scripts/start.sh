#!/usr/bin/env bash
# The one command that starts the whole local stack: toolchain, install from the lockfile,
# Postgres and Redis (started when installed but stopped), migrations, then all five
# services in the foreground until Ctrl-C. Configure with ATMOS_* variables (README).
set -euo pipefail # this script stops at its first failing command (toolchain.sh leaves options alone)
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
source "$ATMOS_ROOT/scripts/deps.sh"
cd "$ATMOS_ROOT"

atmos_prepare
exec node tools/stack/src/stack.ts
