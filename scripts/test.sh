#!/usr/bin/env bash
# The one command that runs every check, from a fresh clone: toolchain, install from the
# frozen lockfile, lint, typecheck, a freshly migrated test database, then every package's
# tests against the real Postgres and Redis. `.ci/run` calls exactly this.
set -euo pipefail # this script stops at its first failing command (toolchain.sh leaves options alone)
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
source "$ATMOS_ROOT/scripts/deps.sh"
cd "$ATMOS_ROOT"

atmos_prepare
# prometheus: promtool, which checks and unit-tests infra/prometheus/alerts.yaml.
atmos_ensure_apt docker-compose python3-dkim chromium prometheus

echo "== lint" >&2
biome ci --reporter=summary .
echo "== typecheck" >&2
# The workspace as one program (tsconfig.json): per package (`turbo run typecheck`) every
# package re-checks the sources it imports, ~9 times the CPU for the same verdict.
tsc -p tsconfig.json
echo "== fresh test database" >&2
node packages/testkit/src/bin/reset-test-database.ts
echo "== tests" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
turbo run test --concurrency=2 --log-order=grouped 2>&1 | tee "$log" || status=$?
# One closing line over every package's node:test summary.
awk '/ℹ pass [0-9]+/ { p += $NF } /ℹ fail [0-9]+/ { f += $NF } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
