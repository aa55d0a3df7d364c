import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { deletePrefix, TEST_REDIS_URL, testRedisPrefix } from '@atmos/testkit'
import type { Redis } from 'ioredis'
import { createRedis, createWorker, deliverMessage, setQueueErrorHandler, TypedQueue } from '../src/index.ts'

describe("bullmq's own errors", () => {
  const prefix = testRedisPrefix('queue-errors')
  let redis: Redis
  before(() => {
    redis = createRedis(TEST_REDIS_URL)
  })
  after(async () => {
    setQueueErrorHandler(undefined)
    await deletePrefix(redis, prefix)
    await redis.quit()
  })

  it("reach the process's handler from every queue and worker made here, instead of bullmq's console.error", async () => {
    const seen: string[] = []
    setQueueErrorHandler((err, where) => seen.push(`${where.role} ${where.queue}: ${err.message}`))
    const queue = new TypedQueue(deliverMessage, redis, prefix)
    const workerRedis = createRedis(TEST_REDIS_URL)
    const worker = createWorker(deliverMessage, workerRedis, prefix, async () => undefined, { autorun: false })
    const printed: unknown[] = []
    const consoleError = console.error
    console.error = (...args: unknown[]) => printed.push(args)
    try {
      // As bullmq's lock manager and scripts emit them.
      worker.emit('error', new Error('could not renew lock for job 1'))
      queue.queue.emit('error', new Error('Missing key for job 1. moveToFinished'))
    } finally {
      console.error = consoleError
    }
    assert.deepEqual(seen, [
      'worker deliver-message: could not renew lock for job 1',
      'queue deliver-message: Missing key for job 1. moveToFinished',
    ])
    assert.deepEqual(printed, [])
    await worker.close()
    await queue.close()
    await workerRedis.quit()
  })
})
