import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { deletePrefix, testRedis, testRedisPrefix } from '@atmos/testkit'
import { DEFAULT_SITE_RULES } from '../src/delivery/config.ts'
import { InFlight } from '../src/delivery/in-flight.ts'
import { parseReply } from '../src/delivery/mx-connection.ts'
import type { MxHost } from '../src/delivery/mx-routes.ts'
import { isReputationDeferral } from '../src/delivery/reputation.ts'
import { retryDelay } from '../src/delivery/retry-schedule.ts'
import { SiteLimiter, SLOW_DOWN_RECHECK_MS } from '../src/delivery/site-limiter.ts'
import { siteOf } from '../src/delivery/sites.ts'

const redis = testRedis()
const prefix = testRedisPrefix('limiter')
after(async () => {
  await deletePrefix(redis, prefix)
  await redis.quit()
})

const host = (name: string): MxHost => ({ name, preference: 10, addresses: ['192.0.2.1'] })
const fallback = { maxConnections: 10, messagesPerConnection: 100 }

describe('delivery building blocks', () => {
  it('keeps at most its limit of messages in delivery, the rest in arrival order, even when one fails', async () => {
    const inFlight = new InFlight(2)
    let running = 0
    let most = 0
    const started: number[] = []
    const gates = new Map<number, () => void>()
    const work = (n: number) =>
      inFlight.run(async () => {
        running++
        most = Math.max(most, running)
        started.push(n)
        await new Promise<void>((resolve) => gates.set(n, resolve))
        running--
        if (n === 1) throw new Error('one failed')
        return n
      })
    const all = [1, 2, 3, 4, 5].map((n) => work(n).catch((e: Error) => e.message))
    const open = async (n: number) => {
      while (!gates.has(n)) await new Promise((r) => setImmediate(r))
      gates.get(n)?.()
    }
    await open(1)
    await open(2)
    await open(3)
    await open(4)
    await open(5)
    assert.deepEqual(await Promise.all(all), ['one failed', 2, 3, 4, 5])
    assert.equal(most, 2)
    assert.deepEqual(started, [1, 2, 3, 4, 5])
  })

  it('parses multi-line replies with enhanced status codes', () => {
    assert.deepEqual(
      parseReply('550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please try'),
      {
        code: 550,
        enhanced: '5.1.1',
        text: 'The email account that you tried to reach does not exist. Please try',
      },
    )
    assert.deepEqual(parseReply('250 OK queued'), { code: 250, text: 'OK queued' })
  })

  it('walks the retry schedule, then repeats its last step', () => {
    const schedule = [120_000, 300_000, 14_400_000]
    assert.deepEqual(
      [1, 2, 3, 4, 9].map((n) => retryDelay(schedule, n)),
      [120_000, 300_000, 14_400_000, 14_400_000, 14_400_000],
    )
  })

  it('keys shaping by MX site: providers by suffix, others by the MX parent domain', () => {
    const gmail = siteOf([host('alt1.aspmx.l.google.com')], DEFAULT_SITE_RULES, fallback)
    assert.deepEqual(gmail, { key: 'gmail', maxConnections: 5, messagesPerConnection: 50 })
    assert.equal(siteOf([host('example-com.mail.protection.outlook.com')], DEFAULT_SITE_RULES, fallback).key, 'outlook')
    assert.equal(siteOf([host('mta7.am0.yahoodns.net')], DEFAULT_SITE_RULES, fallback).messagesPerConnection, 20)
    // Two domains served by mx1/mx2.example.net share one site; an implicit MX is its own.
    assert.equal(siteOf([host('mx1.example.net')], DEFAULT_SITE_RULES, fallback).key, 'mx:example.net')
    assert.equal(siteOf([host('mx2.example.net')], DEFAULT_SITE_RULES, fallback).key, 'mx:example.net')
    assert.deepEqual(siteOf([host('example.org')], DEFAULT_SITE_RULES, fallback), {
      key: 'mx:example.org',
      ...fallback,
    })
    // A suffix matches whole labels only.
    assert.equal(siteOf([host('mx.notgoogle.com')], DEFAULT_SITE_RULES, fallback).key, 'mx:notgoogle.com')
  })

  it('tells reputation deferrals from other temporary failures', () => {
    assert.equal(
      isReputationDeferral({ code: 421, enhanced: '4.7.28', text: 'unusual rate of unsolicited mail' }),
      true,
    )
    assert.equal(isReputationDeferral({ code: 421, text: '[TSS04] Messages temporarily deferred' }), true)
    assert.equal(isReputationDeferral({ code: 451, enhanced: '4.7.500', text: 'Server busy' }), true)
    assert.equal(isReputationDeferral({ code: 450, text: 'Too many connections, try again later' }), true)
    assert.equal(isReputationDeferral({ code: 452, enhanced: '4.2.2', text: 'Mailbox full' }), false)
    assert.equal(isReputationDeferral({ code: 550, enhanced: '5.7.1', text: 'try again later' }), false)
  })

  it('counts connection slots per site across holders, and frees a dead holder’s slot when its lease runs out', async () => {
    // Two processes' views of the same slots: 'c' holds short leases and dies; 'b' holds
    // long ones, so that however slowly this test runs, only 'c' can lapse.
    const slowDown = { forMs: 60_000, connections: 1, ratePerSecond: 1000 }
    const limiter = new SiteLimiter({ redis, prefix, leaseMs: 300, slowDown })
    const longLived = new SiteLimiter({ redis, prefix, leaseMs: 60_000, slowDown })
    assert.equal(await limiter.tryAcquire('s1', 'a', 2), true)
    assert.equal(await longLived.tryAcquire('s1', 'b', 2), true)
    assert.equal(await limiter.tryAcquire('s1', 'c', 2), false)
    assert.equal(await limiter.tryAcquire('s2', 'c', 2), true, 'another site has its own slots')
    await limiter.release('s1', 'a')
    assert.equal(await limiter.tryAcquire('s1', 'c', 2), true)
    assert.equal(await limiter.held('s1'), 2)
    // 'b' keeps renewing, 'c' stops (its process died): wait for its lease to run out.
    const deadline = Date.now() + 15_000
    while ((await limiter.held('s1')) > 1) {
      assert.equal(await longLived.renew('s1', 'b'), true)
      assert.ok(Date.now() < deadline, 'the dead holder’s slot was never freed')
      await sleep(50)
    }
    assert.equal(await limiter.renew('s1', 'c'), false)
    assert.equal(await longLived.renew('s1', 'b'), true)
    assert.equal(await limiter.held('s1'), 1)
    assert.equal(await limiter.tryAcquire('s1', 'd', 2), true)
  })

  it('cuts a slowed-down site to its slow-down connections and rate', async () => {
    const limiter = new SiteLimiter({
      redis,
      prefix,
      leaseMs: 10_000,
      slowDown: { forMs: 60_000, connections: 1, ratePerSecond: 2 },
    })
    assert.equal(await limiter.messageDelay('s3'), 0, 'no rate limit before a slow-down')
    assert.equal(await limiter.messageDelay('s3'), 0)
    await limiter.slowDown('s3')
    assert.equal(await limiter.tryAcquire('s3', 'a', 5), true)
    assert.equal(await limiter.tryAcquire('s3', 'b', 5), false)
    assert.equal(await limiter.messageDelay('s3'), 0, 'the first message goes at once')
    const wait = await limiter.messageDelay('s3')
    assert.ok(wait > 0 && wait <= 500, `then one every 500 ms (wait ${wait})`)
  })

  it('obeys a slow-down another process set within the recheck interval, without asking Redis per message before', async () => {
    // A rate this low refills no token within the test: once this process asks Redis, the
    // second message must wait, however slowly the test runs.
    const slowDown = { forMs: 60_000, connections: 1, ratePerSecond: 0.01 }
    const here = new SiteLimiter({ redis, prefix, leaseMs: 10_000, slowDown })
    const elsewhere = new SiteLimiter({ redis, prefix, leaseMs: 10_000, slowDown })
    const before = Date.now()
    assert.equal(await here.messageDelay('s4'), 0)
    const after = Date.now()
    await elsewhere.slowDown('s4')
    const slowedAt = Date.now()
    // Calls begun before `before + RECHECK` are answered from the cache (full speed); calls
    // begun after `after + RECHECK` ask Redis, and the second of those must be held back.
    let cached = 0
    let askedRedis = 0
    for (;;) {
      const at = Date.now()
      const wait = await here.messageDelay('s4')
      if (at < before + SLOW_DOWN_RECHECK_MS) {
        assert.equal(wait, 0, 'within the recheck interval the cached answer holds')
        cached++
      } else if (at >= after + SLOW_DOWN_RECHECK_MS) {
        askedRedis++
        if (wait > 0) break
        assert.ok(askedRedis < 2, 'the slow-down was not obeyed once the cached answer ran out')
      }
      assert.ok(Date.now() < after + SLOW_DOWN_RECHECK_MS + 15_000, 'the slow-down was never obeyed')
      await sleep(50)
    }
    // The loop's first call began before the cache ran out, unless setting the slow-down took that long.
    if (slowedAt < before + SLOW_DOWN_RECHECK_MS)
      assert.ok(cached > 0, 'messages went from the cache before the recheck')
  })
})
