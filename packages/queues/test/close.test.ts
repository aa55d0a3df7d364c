import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { closedPort, testRedisPrefix } from '@atmos/testkit'
import { createRedis, deliverMessage, TypedQueue } from '../src/index.ts'

describe('a queue closed while Redis is away', () => {
  it('leaves no unhandled rejection behind when its shared connection ends afterwards', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (err: unknown) => unhandled.push(err)
    process.on('unhandledRejection', onUnhandled)
    const redis = createRedis(`redis://127.0.0.1:${await closedPort()}/0`)
    redis.on('error', () => {})
    try {
      // Redis refuses: the queue's connection is still starting when the queue closes.
      await once(redis, 'error')
      const queue = new TypedQueue(deliverMessage, redis, testRedisPrefix('queue-close'))
      // A refusal seen while the queue waits: its start-up will end with that error.
      await once(redis, 'error')
      await queue.close()
      const ended = once(redis, 'end')
      redis.disconnect()
      await ended
      // The start-up's rejection settles on the turns right after 'end'.
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
      assert.deepEqual(
        unhandled.map((e) => String(e)),
        [],
      )
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
