#!/usr/bin/env bash
# The one command that starts the whole local stack: toolchain, install from the lockfile,
# Postgres and Redis (started when installed but stopped), migrations, the local network
# (PLC, PDS, DNS, sink MX; --no-network or ATMOS_STACK_NETWORK=off leaves it out), then all
# five services in the foreground until Ctrl-C. Configure with ATMOS_* variables (README).
set -euo pipefail # this script stops at its first failing command (toolchain.sh leaves options alone)
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
source "$ATMOS_ROOT/scripts/deps.sh"
cd "$ATMOS_ROOT"

atmos_prepare
# swaks (with the Perl modules it needs for STARTTLS and AUTH, Recommends apt would skip):
# the README walkthrough sends with it. Offline without it, the stack still starts.
atmos_ensure_apt swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl || echo "start: swaks could not be installed (apt-get install swaks); the stack starts anyway" >&2
exec node tools/stack/src/stack.ts "$@"
