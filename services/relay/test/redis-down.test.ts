import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { closedPort, ServiceProcess } from '@atmos/testkit'
import type { AddedMember } from '../src/members/store.ts'
import { createMember, type Harness, rfc822, spooled, startSubmission, submitRaw } from './helpers.ts'

const RELAY_ENTRY = new URL('../src/index.ts', import.meta.url)

type Readiness = { status: string; checks: Record<string, string> }

/** Polls /readyz until it answers `expected`; fails with the last answer. */
async function readyz(base: string, expected: number, timeoutMs = 15_000): Promise<Readiness> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    const res = await fetch(`${base}/readyz`)
    last = await res.json()
    if (res.status === expected) return last as Readiness
    await sleep(100)
  }
  assert.fail(`/readyz never answered ${expected}; last: ${JSON.stringify(last)}`)
}

describe('submission while Redis is down', () => {
  let h: Harness
  let m: AddedMember
  const procs: ServiceProcess[] = []

  before(async () => {
    h = await startSubmission({ ATMOS_REDIS_URL: `redis://127.0.0.1:${await closedPort()}/0` })
    m = await createMember(h, 'nored.example')
  })
  after(async () => {
    for (const p of procs) await p.stop('SIGKILL')
    await h?.close()
  })

  it('still answers 250 once the message is spooled: the delivery reconciler enqueues it later', async () => {
    const info = await submitRaw(
      h.port,
      m,
      { from: 'a@nored.example', to: ['x@dest.example'] },
      rfc822({ From: 'a@nored.example', To: 'x@dest.example' }, 'x\r\n'),
    )
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as /)
    const rows = await spooled(h.sql)
    assert.equal(rows.length, 1)
    assert.ok(info.response.includes(rows[0]!.id))
  })

  it('a submission process stays ready (degraded, naming Redis) and accepts mail; a delivery-only one is not ready', async () => {
    const submission = new ServiceProcess(RELAY_ENTRY, { ...h.env, ATMOS_LOG_LEVEL: 'info' })
    procs.push(submission)
    const ready = await readyz(await submission.opsUrl(), 200)
    assert.equal(ready.status, 'degraded')
    assert.match(ready.checks.redis ?? '', /^redis connection is/)
    assert.deepEqual([ready.checks.postgres, ready.checks.service], ['ok', 'ok'])
    const listening = await submission.waitForLog((l) => l.msg === 'submission listening (STARTTLS)')
    const info = await submitRaw(
      Number(String(listening.smtp).split(':').at(-1)),
      m,
      { from: 'b@nored.example', to: ['y@dest.example'] },
      rfc822({ From: 'b@nored.example', To: 'y@dest.example' }, 'y\r\n'),
    )
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as /)

    const delivery = new ServiceProcess(RELAY_ENTRY, {
      ...h.env,
      ATMOS_LOG_LEVEL: 'info',
      ATMOS_RELAY_ROLES: 'delivery',
    })
    procs.push(delivery)
    const notReady = await readyz(await delivery.opsUrl(), 503)
    assert.equal(notReady.status, 'unavailable')
    assert.match(notReady.checks.redis ?? '', /^redis connection is/)
    assert.equal(notReady.checks.postgres, 'ok')

    for (const proc of [submission, delivery]) {
      assert.equal((await proc.stop('SIGTERM')).code, 0, proc.dump())
      for (const line of proc.logs) assert.equal(line.unparsed, undefined, `not JSON: ${line.msg}`)
      assert.equal(proc.stderr, '')
    }
  })
})
