import assert from 'node:assert/strict'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { createDb } from '@atmos/db'
import { createRedis } from '@atmos/queues'
import { closedPort } from '@atmos/testkit'
import {
  createLogger,
  DependencyWatch,
  describeError,
  errorFields,
  postgresProbe,
  redisProbe,
  retryLogLevel,
  urlTarget,
  type WatchedDependency,
} from '../src/index.ts'

// A dependency that is down is said once, with where it was sought and why; while it stays
// down the retries are quiet; when it is back that is said once. The outage is real: a
// loopback port that refuses, then forwards to the machine's Postgres or Redis.

type Line = Record<string, unknown> & { msg: string; level: string }

function capture(): { logger: ReturnType<typeof createLogger>; lines: Line[] } {
  const lines: Line[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const text of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(text) as Line)
      done()
    },
  })
  return { logger: createLogger('watch-test', 'info', sink), lines }
}

/** Listens on `port` and forwards every connection to `upstreamPort` (the dependency "comes back"). */
async function forward(port: number, upstreamPort: number): Promise<{ close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = connect(upstreamPort, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => sockets.delete(s))
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return {
    // server.close waits for open connections: cut them first.
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await closed
    },
  }
}

async function until(ok: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Wraps a probe to count its calls, so the test can wait for retries rather than for time. */
function counted(probe: WatchedDependency['probe']): { probe: WatchedDependency['probe']; calls: () => number } {
  let n = 0
  return {
    probe: () => {
      n++
      return probe()
    },
    calls: () => n,
  }
}

const cleanups: Array<() => Promise<unknown> | unknown> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

describe('DependencyWatch', () => {
  it('Postgres refusing: one line naming postgres, host:port and ECONNREFUSED, quiet retries, one line when back', async () => {
    const port = await closedPort()
    const db = createDb({ url: `postgres://root@127.0.0.1:${port}/postgres`, poolMax: 1, connectTimeout: 2 })
    cleanups.push(() => db.$client.end({ timeout: 1 }))
    const { logger, lines } = capture()
    const probe = counted(postgresProbe(db))
    const watch = new DependencyWatch({
      logger,
      intervalMs: 50,
      dependencies: [{ name: 'postgres', target: `127.0.0.1:${port}`, probe: probe.probe }],
    })
    cleanups.push(() => watch.stop())
    watch.start()

    await until(() => probe.calls() >= 5, 'five probes while Postgres is down')
    assert.equal(lines.length, 1, JSON.stringify(lines))
    const [down] = lines
    assert.equal(down?.level, 'error')
    assert.equal(down?.dependency, 'postgres')
    assert.equal(down?.target, `127.0.0.1:${port}`)
    assert.equal(down?.code, 'ECONNREFUSED')
    assert.match(down?.msg ?? '', /postgres at 127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\)/)
    assert.ok(watch.isDown('postgres'))

    const proxy = await forward(port, 5432)
    cleanups.push(() => proxy.close())
    await until(() => !watch.isDown('postgres'), 'postgres seen back')
    const seen = probe.calls()
    await until(() => probe.calls() >= seen + 3, 'more probes once it is back')
    assert.equal(lines.length, 2, JSON.stringify(lines))
    assert.equal(lines[1]?.level, 'info')
    assert.equal(lines[1]?.dependency, 'postgres')
    assert.match(lines[1]?.msg ?? '', /^postgres at 127\.0\.0\.1:\d+ is back$/)
    assert.equal(typeof lines[1]?.downForMs, 'number')
  })

  it('Redis refusing: its last connection error is the answer, said once; back once it reconnects', async () => {
    const port = await closedPort()
    const redis = createRedis(`redis://127.0.0.1:${port}/0`, { retryStrategy: () => 50 })
    redis.on('error', () => {})
    cleanups.push(() => redis.disconnect())
    const { logger, lines } = capture()
    const probe = counted(redisProbe(redis))
    const watch = new DependencyWatch({
      logger,
      intervalMs: 50,
      dependencies: [{ name: 'redis', target: `127.0.0.1:${port}`, probe: probe.probe }],
    })
    cleanups.push(() => watch.stop())
    watch.start()
    await until(() => watch.isDown('redis'), 'redis seen down')
    const seen = probe.calls()
    await until(() => probe.calls() >= seen + 5, 'five more probes while Redis is down')
    assert.equal(lines.length, 1, JSON.stringify(lines))
    assert.equal(lines[0]?.dependency, 'redis')
    assert.equal(lines[0]?.code, 'ECONNREFUSED')

    const proxy = await forward(port, 6379)
    cleanups.push(() => proxy.close())
    await until(() => !watch.isDown('redis'), 'redis seen back')
    assert.equal(lines.length, 2, JSON.stringify(lines))
    assert.match(lines[1]?.msg ?? '', /^redis at 127\.0\.0\.1:\d+ is back$/)
  })
})

describe('describeError', () => {
  it("finds the cause in an AggregateError (connecting to localhost's two addresses), whose message is empty", () => {
    const refused = (address: string) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}:5432`), { code: 'ECONNREFUSED' })
    const err = Object.assign(new AggregateError([refused('::1'), refused('127.0.0.1')], ''), {
      code: 'ECONNREFUSED',
    })
    assert.deepEqual(describeError(err), {
      code: 'ECONNREFUSED',
      message: 'connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432',
    })
  })

  it('prefers the cause to a wrapper that only names the query', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5999'), { code: 'ECONNREFUSED' })
    const err = new Error('Failed query: select 1\nparams: ', { cause })
    assert.deepEqual(describeError(err), { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:5999' })
  })

  it('keeps an error that has its own code and message', () => {
    const err = Object.assign(new Error('password authentication failed for user "x"'), { code: '28P01' })
    assert.deepEqual(describeError(err), { code: '28P01', message: 'password authentication failed for user "x"' })
  })
})

describe('retryLogLevel and errorFields', () => {
  it('a retry that meets an unreachable dependency is debug (the watch said it); any other failure a warning', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5999'), { code: 'ECONNREFUSED' })
    assert.equal(retryLogLevel(new Error('Failed query: select 1', { cause: refused })), 'debug')
    assert.equal(retryLogLevel(Object.assign(new Error('relation "x" does not exist'), { code: '42P01' })), 'warn')
    assert.equal(retryLogLevel(new Error('no code at all')), 'warn')
    assert.deepEqual(errorFields(new Error('Failed query: select 1', { cause: refused })), {
      err: 'connect ECONNREFUSED 127.0.0.1:5999',
      code: 'ECONNREFUSED',
    })
    assert.deepEqual(errorFields(new Error('plain')), { err: 'plain' })
  })
})

describe('urlTarget', () => {
  it('gives host:port, never the credentials', () => {
    assert.equal(urlTarget('postgres://user:secret@db.internal:6543/atmos', 5432), 'db.internal:6543')
    assert.equal(urlTarget('redis://:secret@cache/0', 6379), 'cache:6379')
    assert.equal(urlTarget('not a url', 5432), 'an invalid URL')
  })
})
