import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'

export const TEST_REDIS_URL = process.env.ATMOS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0'

/** A key prefix of its own, so that test files sharing the one Redis never see each other's jobs. */
export function testRedisPrefix(label = 't'): string {
  return `atmos-test-${label}-${randomBytes(4).toString('hex')}`
}

export function testRedis(): Redis {
  return new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null })
}

/** Deletes every key under a prefix (bullmq keys are `<prefix>:<queue>:…`). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  let deleted = 0
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500)
    cursor = next
    if (keys.length) deleted += await redis.del(...keys)
  } while (cursor !== '0')
  return deleted
}
