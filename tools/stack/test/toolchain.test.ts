import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { it } from 'node:test'
import { fileURLToPath } from 'node:url'

const toolchain = fileURLToPath(new URL('../../../scripts/toolchain.sh', import.meta.url))

/** Runs a bash script with the toolchain's path as $1 and returns its stdout. */
function bash(script: string): string {
  return execFileSync('bash', ['-c', script, 'bash', toolchain], { encoding: 'utf8' })
}

it("sourcing scripts/toolchain.sh leaves the caller's shell options as they were", () => {
  const out = bash(`
    before="$(set +o)$-"
    source "$1" || echo "source failed"
    after="$(set +o)$-"
    [[ "$before" == "$after" ]] && echo same || { echo differ; diff <(echo "$before") <(echo "$after"); }
    false
    echo "still running after a failing command"
    command -v node
    node --version
  `)
  assert.match(out, /^same$/m, out)
  assert.doesNotMatch(out, /source failed/, out)
  assert.match(out, /^still running after a failing command$/m, out)
  assert.match(out, /\.tools\/node_modules\/\.bin\/node$/m, 'the pinned node comes first on PATH')
  assert.match(out, /^v22\./m, out)
})

it('a caller that chose errexit keeps it: start.sh, test.sh and bench.sh set it themselves', () => {
  const out = bash(`
    set -euo pipefail
    source "$1"
    echo "$-" ; set -o | grep pipefail
  `)
  assert.match(out, /^[^\n]*e[^\n]*u/m, out)
  assert.match(out, /pipefail\s+on/, out)
  for (const script of ['start.sh', 'test.sh', 'bench.sh']) {
    const path = fileURLToPath(new URL(`../../../scripts/${script}`, import.meta.url))
    const text = execFileSync('cat', [path], { encoding: 'utf8' })
    const setAt = text.indexOf('set -euo pipefail')
    assert.ok(setAt >= 0 && setAt < text.indexOf('toolchain.sh"'), `${script} sets errexit before sourcing`)
  }
})
