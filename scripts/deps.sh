# Sourced by start.sh and test.sh: makes sure Postgres and Redis answer where the config
# says they are. An installed but stopped local server is started; an absent one is a
# clear error that says how to get it. Servers elsewhere are only checked.

atmos_url_part() { # url part(host|port) default
  node -e 'const u = new URL(process.argv[1]); const v = process.argv[2] === "host" ? u.hostname : u.port; console.log(v || process.argv[3])' "$1" "$2" "$3"
}

atmos_is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" || "$1" == "[::1]" ]]; }

atmos_wait_for() { # what command...
  local what=$1; shift
  for _ in $(seq 1 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "deps: $what did not come up" >&2
  return 1
}

atmos_ensure_postgres() {
  local url=${ATMOS_DATABASE_URL:-postgres://root@127.0.0.1:5432/atmos}
  local host port
  host=$(atmos_url_part "$url" host 127.0.0.1)
  port=$(atmos_url_part "$url" port 5432)
  if node -e 'const s = require("net").connect(+process.argv[2], process.argv[1]); s.on("connect", () => process.exit(0)); s.on("error", () => process.exit(1)); s.setTimeout(3000, () => process.exit(1))' "$host" "$port"; then
    return 0
  fi
  if atmos_is_local "$host" && command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "deps: starting the local PostgreSQL cluster" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start >&2 || true
    atmos_wait_for "PostgreSQL on $host:$port" pg_isready -q -h "$host" -p "$port"
    return
  fi
  # Say what is true: a server elsewhere is only checked, never started, whatever is installed here.
  if ! atmos_is_local "$host"; then
    echo "deps: PostgreSQL does not answer at $host:$port (ATMOS_DATABASE_URL). That host is not 127.0.0.1, localhost or ::1," >&2
    echo "      so nothing is started here: start the server there, or point ATMOS_DATABASE_URL at one that runs." >&2
    exit 1
  fi
  echo "deps: PostgreSQL is not reachable at $host:$port and no local cluster is installed." >&2
  echo "      Install it (apt-get install postgresql) or point ATMOS_DATABASE_URL at a running server." >&2
  exit 1
}

atmos_ensure_redis() {
  local url=${ATMOS_REDIS_URL:-redis://127.0.0.1:6379/0}
  local host port
  host=$(atmos_url_part "$url" host 127.0.0.1)
  port=$(atmos_url_part "$url" port 6379)
  if node -e 'const s = require("net").connect(+process.argv[2], process.argv[1]); s.on("connect", () => process.exit(0)); s.on("error", () => process.exit(1)); s.setTimeout(3000, () => process.exit(1))' "$host" "$port"; then
    return 0
  fi
  if atmos_is_local "$host" && command -v redis-server >/dev/null; then
    echo "deps: starting a local Redis on $host:$port" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no >&2
    atmos_wait_for "Redis on $host:$port" redis-cli -h "$host" -p "$port" ping
    return
  fi
  if ! atmos_is_local "$host"; then
    echo "deps: Redis does not answer at $host:$port (ATMOS_REDIS_URL). That host is not 127.0.0.1, localhost or ::1," >&2
    echo "      so nothing is started here: start the server there, or point ATMOS_REDIS_URL at one that runs." >&2
    exit 1
  fi
  echo "deps: Redis is not reachable at $host:$port and redis-server is not installed." >&2
  echo "      Install it (apt-get install redis-server) or point ATMOS_REDIS_URL at a running server." >&2
  exit 1
}

# Debian packages the tests drive as real peers (docker-compose validates the compose file;
# python3-dkim is the DKIM verifier that is not mailauth; chromium is the browser the admin's
# end-to-end tests drive through playwright-core, never a downloaded one).
atmos_ensure_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "deps: installing ${missing[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

# What every top-level command needs first: the workspace installed from the lockfile and
# Postgres and Redis answering.
atmos_prepare() {
  atmos_install
  atmos_ensure_postgres
  atmos_ensure_redis
}
