import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { closedPort, runCli } from '@atmos/testkit'
import { Redis } from 'ioredis'
import {
  CHECK_TIMEOUT_MS,
  createLogger,
  createMetricsRegistry,
  OpsServer,
  redisCheck,
  withTimeout,
} from '../src/index.ts'

function capture() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    },
  })
  return { lines, stream }
}

describe('logger', () => {
  it('writes JSON lines and never the value of a secret field, however deep', () => {
    const { lines, stream } = capture()
    const logger = createLogger('relay', 'info', stream)
    logger.info(
      { password: 'hunter2', member: { privateKey: '-----BEGIN PRIVATE KEY-----' }, a: { b: { token: 'tok' } } },
      'credentials checked',
    )
    const out = lines.join('')
    for (const secret of ['hunter2', 'BEGIN PRIVATE KEY', 'tok"']) assert.ok(!out.includes(secret), `leaked ${secret}`)
    const line = JSON.parse(out)
    assert.equal(line.msg, 'credentials checked')
    assert.equal(line.service, 'relay')
    assert.equal(line.level, 'info')
    assert.equal(line.password, '[redacted]')
  })
})

describe('ops server', () => {
  const logger = createLogger('test', 'silent')

  async function withServer(
    checks: ConstructorParameters<typeof OpsServer>[0]['checks'],
    fn: (base: string, ops: OpsServer) => Promise<void>,
  ) {
    const ops = new OpsServer({ host: '127.0.0.1', port: 0, logger, metrics: createMetricsRegistry('test'), checks })
    const address = await ops.start()
    try {
      await fn(`http://127.0.0.1:${address.port}`, ops)
    } finally {
      await ops.stop()
    }
  }

  it('reports each failing dependency by name, and 503 while draining', async () => {
    await withServer(
      [
        { name: 'postgres', check: async () => {} },
        {
          name: 'redis',
          check: async () => {
            throw new Error('connection refused')
          },
        },
      ],
      async (base, ops) => {
        const res = await fetch(`${base}/readyz`)
        assert.equal(res.status, 503)
        assert.deepEqual(await res.json(), {
          status: 'unavailable',
          checks: { postgres: 'ok', redis: 'connection refused' },
        })
        ops.startDraining()
        const draining = await fetch(`${base}/readyz`)
        assert.equal(draining.status, 503)
        assert.deepEqual(await draining.json(), { status: 'draining' })
        assert.equal((await fetch(`${base}/healthz`)).status, 200)
      },
    )
  })

  it('stays ready when only a check it does not require fails, and says it is degraded', async () => {
    await withServer(
      [
        { name: 'postgres', check: async () => {} },
        {
          name: 'redis',
          required: false,
          check: async () => {
            throw new Error('connection refused')
          },
        },
      ],
      async (base) => {
        const res = await fetch(`${base}/readyz`)
        assert.equal(res.status, 200)
        assert.deepEqual(await res.json(), {
          status: 'degraded',
          checks: { postgres: 'ok', redis: 'connection refused' },
        })
        const metrics = await (await fetch(`${base}/metrics`)).text()
        assert.match(metrics, /^atmos_readiness_check\{check="redis",required="false",service="test"\} 0$/m)
        assert.match(metrics, /^atmos_readiness_check\{check="postgres",required="true",service="test"\} 1$/m)
      },
    )
  })

  it('cuts a hanging check off within its timeout, so that probes with a longer one get an answer', async () => {
    await withServer([{ name: 'redis', check: () => new Promise<void>(() => {}) }], async (base) => {
      const started = Date.now()
      const res = await fetch(`${base}/readyz`)
      assert.equal(res.status, 503)
      assert.match(JSON.stringify(await res.json()), /redis did not answer within/)
      assert.ok(Date.now() - started < CHECK_TIMEOUT_MS + 1000)
    })
  })

  it('answers even when a dependency hangs', async () => {
    const hang = () => withTimeout(new Promise<void>(() => {}), 200, 'postgres')
    await withServer([{ name: 'postgres', check: hang }], async (base) => {
      const res = await fetch(`${base}/readyz`)
      assert.equal(res.status, 503)
      assert.match(JSON.stringify(await res.json()), /postgres did not answer within 200 ms/)
    })
  })

  it('serves Prometheus text with the service label', async () => {
    await withServer([], async (base) => {
      const res = await fetch(`${base}/metrics`)
      assert.equal(res.status, 200)
      assert.match(await res.text(), /atmos_nodejs_heap_size_used_bytes\{service="test"\}/)
    })
  })
})

describe('redis readiness', () => {
  it('fails within its timeout when Redis is unreachable', async () => {
    const redis = new Redis(`redis://127.0.0.1:${await closedPort()}`, {
      maxRetriesPerRequest: null,
      lazyConnect: false,
    })
    redis.on('error', () => {})
    try {
      const started = Date.now()
      await assert.rejects(redisCheck(redis, 300).check(), /redis connection is (reconnecting|connecting|connect)/)
      assert.ok(Date.now() - started < 2000)
    } finally {
      redis.disconnect()
    }
  })
})

describe('process output', () => {
  it('console output, process warnings and an uncaught exception all become JSON log lines', async () => {
    const result = await runCli(new URL('./fixtures/noisy-process.ts', import.meta.url), [], {})
    assert.equal(result.code, 1)
    assert.equal(result.err, '', 'nothing on stderr')
    const lines = result.out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    const byMsg = (re: RegExp) => lines.find((l) => re.test(String(l.msg)))
    assert.equal(byMsg(/^plain log$/)?.level, 'info')
    assert.equal(byMsg(/minimum Redis version/)?.level, 'warn')
    assert.equal(byMsg(/^could not renew lock for job 7$/)?.level, 'error')
    assert.match(String((byMsg(/could not renew lock/)?.err as { stack?: string })?.stack), /could not renew lock/)
    assert.equal(byMsg(/Unhandled error event/)?.level, 'error')
    assert.equal(byMsg(/something deprecated/)?.level, 'warn')
    assert.equal(byMsg(/uncaught exception/)?.level, 'fatal')
  })
})
