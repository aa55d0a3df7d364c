import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createTestDatabase, type TestDatabase } from './database.ts'
import { closedPort } from './net.ts'
import { ServiceProcess } from './process.ts'
import { TEST_REDIS_URL, testRedisPrefix } from './redis.ts'

/**
 * The contract every service keeps with its orchestrator, run against the real process:
 * probes, metrics, readiness that follows Postgres, a clean exit on SIGTERM and a clear
 * refusal of bad config. Each service's test/lifecycle.test.ts calls this.
 */
export function describeServiceLifecycle(
  service: string,
  entry: URL,
  opts: {
    env?: () => Promise<Record<string, string>> | Record<string, string>
    /**
     * What a Redis outage does to readiness, as the service declares it (its context.ts):
     * 'required' takes it out of service (503), 'degraded' keeps it ready (200) and says so.
     */
    redis: 'required' | 'degraded'
  },
) {
  describe(`${service} process lifecycle`, () => {
    let db: TestDatabase
    let extraEnv: Record<string, string> = {}
    const baseEnv = () => ({
      ...extraEnv,
      ATMOS_DATABASE_URL: db.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: testRedisPrefix(service),
      ATMOS_HTTP_PORT: '0',
      ATMOS_LOG_LEVEL: 'info',
    })

    before(async () => {
      db = await createTestDatabase()
      extraEnv = (await opts.env?.()) ?? {}
    })
    after(async () => {
      await db?.drop()
    })

    it('answers /healthz, /readyz and /metrics, then exits 0 on SIGTERM within 10 s', async () => {
      const proc = new ServiceProcess(entry, baseEnv())
      try {
        const base = await proc.opsUrl()
        const health = await fetch(`${base}/healthz`)
        assert.equal(health.status, 200)
        assert.deepEqual(await health.json(), { status: 'ok' })

        const ready = await fetchReady(base, 200)
        assert.deepEqual(ready, { status: 'ready', checks: { postgres: 'ok', redis: 'ok', service: 'ok' } })

        const metrics = await fetch(`${base}/metrics`)
        assert.equal(metrics.status, 200)
        assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/)
        const text = await metrics.text()
        assert.match(text, /^# TYPE atmos_process_cpu_user_seconds_total counter$/m)
        assert.match(text, new RegExp(`service="${service}"`))

        await proc.waitForLog((l) => l.msg === 'started')
        const exit = await proc.stop('SIGTERM')
        assert.equal(exit.code, 0, proc.dump())
        assert.ok(exit.ms < 10_000, `took ${exit.ms} ms to stop`)
        assert.ok(proc.logs.some((l) => l.msg === 'stopped'))
        for (const line of proc.logs) assert.equal(line.unparsed, undefined, `not JSON: ${line.msg}`)
      } finally {
        await proc.stop('SIGKILL')
      }
    })

    it('reports not ready while Postgres is unreachable, yet stays alive and stops cleanly', async () => {
      const port = await closedPort()
      const proc = new ServiceProcess(entry, {
        ...baseEnv(),
        ATMOS_DATABASE_URL: `postgres://root@127.0.0.1:${port}/atmos`,
      })
      try {
        const base = await proc.opsUrl()
        const ready = (await fetchReady(base, 503)) as { status: string; checks: Record<string, string> }
        assert.equal(ready.status, 'unavailable')
        assert.notEqual(ready.checks.postgres, 'ok')
        assert.equal(ready.checks.redis, 'ok')
        assert.equal((await fetch(`${base}/healthz`)).status, 200)
        // One line says which dependency is down, where it was sought and why.
        const down = await proc.waitForLog((l) => l.dependency === 'postgres')
        assert.equal(down.level, 'error')
        assert.equal(down.target, `127.0.0.1:${port}`)
        assert.equal(down.code, 'ECONNREFUSED')
        assert.match(down.msg ?? '', /postgres at 127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\)/)
        const exit = await proc.stop('SIGINT')
        assert.equal(exit.code, 0, proc.dump())
        assertQuietJson(proc)
        assert.equal(proc.logs.filter((l) => l.dependency === 'postgres').length, 1, proc.dump())
      } finally {
        await proc.stop('SIGKILL')
      }
    })

    it(`while Redis is unreachable: ${opts.redis === 'required' ? 'not ready' : 'ready, and says it is degraded'}; every line it writes is JSON`, async () => {
      const port = await closedPort()
      const proc = new ServiceProcess(entry, { ...baseEnv(), ATMOS_REDIS_URL: `redis://127.0.0.1:${port}/0` })
      try {
        const base = await proc.opsUrl()
        const expected = opts.redis === 'required' ? 503 : 200
        const ready = (await fetchReady(base, expected)) as { status: string; checks: Record<string, string> }
        assert.equal(ready.status, opts.redis === 'required' ? 'unavailable' : 'degraded')
        assert.match(ready.checks.redis ?? '', /redis/)
        assert.equal(ready.checks.postgres, 'ok')
        if (opts.redis === 'degraded') assert.equal(ready.checks.service, 'ok', 'its work started without Redis')
        const metrics = await (await fetch(`${base}/metrics`)).text()
        assert.match(
          metrics,
          new RegExp(`^atmos_readiness_check\\{check="redis",required="${opts.redis === 'required'}"[^}]*\\} 0$`, 'm'),
        )
        const down = await proc.waitForLog((l) => l.dependency === 'redis')
        assert.equal(down.target, `127.0.0.1:${port}`)
        assert.equal(down.code, 'ECONNREFUSED')
        const exit = await proc.stop('SIGTERM')
        assert.equal(exit.code, 0, proc.dump())
        assertQuietJson(proc)
        assert.equal(proc.logs.filter((l) => l.dependency === 'redis').length, 1, proc.dump())
      } finally {
        await proc.stop('SIGKILL')
      }
    })

    it('refuses an invalid config at start, naming the field and its source', async () => {
      const proc = new ServiceProcess(entry, { ...baseEnv(), ATMOS_HTTP_PORT: '99999' })
      const exit = await proc.exited
      assert.equal(exit.code, 2)
      assert.match(proc.stderr, /http\.port \(from ATMOS_HTTP_PORT\)/)
    })
  })
}

/**
 * Every line is JSON, nothing on stderr, and no warning or error repeats itself: a dependency
 * that stays down is said once, not on every retry (and no stack trace is printed raw).
 */
function assertQuietJson(proc: ServiceProcess): void {
  for (const line of proc.logs) assert.equal(line.unparsed, undefined, `not JSON: ${line.msg}`)
  assert.equal(proc.stderr, '', 'nothing but JSON log lines on stdout')
  const loud = proc.logs.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal')
  const counts = new Map<string, number>()
  for (const l of loud) counts.set(String(l.msg), (counts.get(String(l.msg)) ?? 0) + 1)
  const repeated = [...counts].filter(([, n]) => n > 1)
  assert.deepEqual(repeated, [], `warnings repeated while a dependency is down:\n${proc.dump()}`)
}

/** Polls /readyz until it answers the expected status (dependencies connect lazily). */
async function fetchReady(base: string, expected: number, timeoutMs = 10_000): Promise<unknown> {
  const deadline = Date.now() + timeoutMs
  let last: { status: number; body: unknown } | undefined
  while (Date.now() < deadline) {
    const res = await fetch(`${base}/readyz`)
    last = { status: res.status, body: await res.json() }
    if (res.status === expected) return last.body
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail(`/readyz never answered ${expected}; last: ${JSON.stringify(last)}`)
}
