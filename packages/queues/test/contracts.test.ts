import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { deletePrefix, TEST_REDIS_URL, testRedisPrefix } from '@atmos/testkit'
import { type Job, Queue, QueueEvents } from 'bullmq'
import type { Redis } from 'ioredis'
import {
  ALL_QUEUES,
  createRedis,
  createWorker,
  deliverMessage,
  InvalidPayloadError,
  TypedQueue,
  verifyAttestation,
} from '../src/index.ts'

describe('queue contracts', () => {
  const prefix = testRedisPrefix('queues')
  let redis: Redis
  before(() => {
    redis = createRedis(TEST_REDIS_URL)
  })
  after(async () => {
    await deletePrefix(redis, prefix)
    await redis.quit()
  })

  it('names every queue once, in kebab-case', () => {
    const names = ALL_QUEUES.map((q) => q.name)
    assert.equal(new Set(names).size, names.length)
    for (const n of names) assert.match(n, /^[a-z][a-z0-9-]*$/)
  })

  it('refuses an off-contract payload at enqueue and writes nothing to Redis', async () => {
    const queue = new TypedQueue(verifyAttestation, redis, prefix)
    try {
      await assert.rejects(
        // Well-typed, but not a DID and not a datetime: only the schema can tell.
        queue.enqueue({ did: 'not-a-did', trigger: 'ingest', requestedAt: 'yesterday' }),
        (err: Error) =>
          err instanceof InvalidPayloadError &&
          /did: expected a DID/.test(err.message) &&
          /requestedAt: Invalid ISO datetime/.test(err.message),
      )
      await assert.rejects(
        queue.enqueue({
          did: 'did:plc:abc',
          trigger: 'ingest',
          requestedAt: new Date().toISOString(),
          extra: 1,
        } as never),
        /Unrecognized key: "extra"/,
      )
      const counts = await queue.queue.getJobCounts()
      assert.equal(
        Object.values(counts).reduce((a, b) => a + b, 0),
        0,
      )
      const job = await queue.enqueue({ did: 'did:plc:abc', trigger: 'ingest', requestedAt: new Date().toISOString() })
      assert.equal(job.data.did, 'did:plc:abc')
      assert.equal(await queue.queue.count(), 1)
    } finally {
      await queue.close()
    }
  })

  it('takes one message or several in a delivery job, never both, and recipients only with one', async () => {
    const queue = new TypedQueue(deliverMessage, redis, prefix)
    const a = '00000000-0000-4000-8000-000000000001'
    const b = '00000000-0000-4000-8000-000000000002'
    try {
      await assert.rejects(queue.enqueue({ messageId: a, messageIds: [b] }), /exactly one of messageId and messageIds/)
      await assert.rejects(queue.enqueue({}), /exactly one of messageId and messageIds/)
      await assert.rejects(queue.enqueue({ messageIds: [a], recipientIds: [1] }), /recipientIds go with messageId only/)
      await assert.rejects(queue.enqueue({ messageIds: [] }), /messageIds: Too small/)
      await assert.rejects(queue.enqueue({ messageIds: ['nope'] }), /messageIds\.0: Invalid UUID/)
      const job = await queue.enqueue({ messageIds: [a, b] })
      assert.deepEqual(job.data, { messageIds: [a, b] })
    } finally {
      // Nothing left for the next test's worker to take.
      await queue.queue.obliterate({ force: true })
      await queue.close()
    }
  })

  it('fails a job with an off-contract payload at processing, without retrying or calling the handler', async () => {
    // A producer that bypasses the contract (an older version, or a hand-written job).
    const raw = new Queue(deliverMessage.name, { connection: redis, prefix })
    const eventsConnection = createRedis(TEST_REDIS_URL)
    const workerConnection = createRedis(TEST_REDIS_URL)
    const events = new QueueEvents(deliverMessage.name, { connection: eventsConnection, prefix })
    await events.waitUntilReady()
    const handled: unknown[] = []
    const worker = createWorker(deliverMessage, workerConnection, prefix, async (payload) => {
      handled.push(payload)
      return 'delivered'
    })
    try {
      // Listen before adding, so that no failure event can slip past.
      const reasons = new Map<string, string>()
      const failures: Array<() => void> = []
      events.on('failed', ({ jobId, failedReason }) => {
        reasons.set(jobId, failedReason)
        for (const check of failures) check()
      })
      const failedBoth = (ids: string[]) =>
        new Promise<void>((resolve) => {
          const check = () => ids.every((id) => reasons.has(id)) && resolve()
          failures.push(check)
          check()
        })
      const bad = await raw.add(deliverMessage.name, { messageId: 42 }, { attempts: 5 })
      const badUuid = await raw.add(deliverMessage.name, { messageId: 'msg-1' }, { attempts: 5 })
      const bothFailed = failedBoth([bad.id as string, badUuid.id as string])
      await bothFailed
      assert.match(reasons.get(badUuid.id as string) ?? '', /messageId: Invalid UUID/)
      assert.match(
        reasons.get(bad.id as string) ?? '',
        /invalid payload for queue deliver-message: messageId: Invalid input: expected string, received number/,
      )
      const job = (await raw.getJob(bad.id as string)) as Job
      assert.equal(job.attemptsMade, 1, 'an off-contract job must not be retried')

      const good = await raw.add(deliverMessage.name, { messageId: '1d1f8b9e-8f0e-4c38-9a53-0c3c1c6a9d10' })
      assert.equal(await good.waitUntilFinished(events, 10_000), 'delivered')
      assert.deepEqual(handled, [{ messageId: '1d1f8b9e-8f0e-4c38-9a53-0c3c1c6a9d10' }])
    } finally {
      await worker.close()
      await events.close()
      await raw.close()
      // bullmq leaves connections it was given open.
      await Promise.all([eventsConnection.quit(), workerConnection.quit()])
    }
  })
})
