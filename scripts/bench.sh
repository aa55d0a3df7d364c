#!/usr/bin/env bash
# Runs every benchmark under bench/ and prints each figure beside its target. Not part
# of the tests. Installs wrk (the HTTP load client), dnsmasq (a fast loopback DNS server for
# the verification figure) and Postfix with OpenDKIM (the relay's reference) from Debian when
# they are missing.
set -euo pipefail # this script stops at its first failing command (toolchain.sh leaves options alone)
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
source "$ATMOS_ROOT/scripts/deps.sh"
cd "$ATMOS_ROOT"
atmos_prepare
atmos_ensure_apt wrk dnsmasq-base
# The relay's same-run reference: Postfix with OpenDKIM and Cyrus SASL (sasldb). Postfix's
# installer would otherwise ask what kind of mail system this is; the bench runs its own instance.
if ! dpkg -s postfix >/dev/null 2>&1; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
fi
atmos_ensure_apt postfix opendkim sasl2-bin libsasl2-modules libsasl2-modules-db
exec node bench/src/run.ts "$@"
