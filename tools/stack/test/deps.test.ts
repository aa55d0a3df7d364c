import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { it } from 'node:test'
import { fileURLToPath } from 'node:url'

const deps = fileURLToPath(new URL('../../../scripts/deps.sh', import.meta.url))

/** Sources scripts/deps.sh in a fresh bash and calls one of its functions. */
function ensure(fn: string, env: Record<string, string>) {
  return spawnSync('bash', ['-c', `source "$1" && ${fn}`, 'bash', deps], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 30_000,
  })
}

// 127.0.0.2 is loopback (refuses at once) but not one of the names the script starts servers for.
it('an unreachable PostgreSQL on a host that is not local is named as such, whatever is installed here', () => {
  const run = ensure('atmos_ensure_postgres', { ATMOS_DATABASE_URL: 'postgres://root@127.0.0.2:1/atmos' })
  assert.equal(run.status, 1, run.stderr)
  assert.match(run.stderr, /PostgreSQL does not answer at 127\.0\.0\.2:1 \(ATMOS_DATABASE_URL\)/)
  assert.match(run.stderr, /nothing is started here/)
  assert.doesNotMatch(run.stderr, /no local cluster is installed/)
})

it('an unreachable Redis on a host that is not local is named as such', () => {
  const run = ensure('atmos_ensure_redis', { ATMOS_REDIS_URL: 'redis://127.0.0.2:1/0' })
  assert.equal(run.status, 1, run.stderr)
  assert.match(run.stderr, /Redis does not answer at 127\.0\.0\.2:1 \(ATMOS_REDIS_URL\)/)
  assert.doesNotMatch(run.stderr, /is not installed/)
})

it('the local servers that answer pass the check', () => {
  const run = ensure('atmos_ensure_postgres && atmos_ensure_redis', {})
  assert.equal(run.status, 0, run.stderr)
})
