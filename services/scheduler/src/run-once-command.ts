// What `scheduler run-once` does once its arguments are settled. src/cli.ts imports this
// module only when the command runs, so that help and usage errors load the parser alone.
import { loadConfig } from '@atmos/config'
import { createDb } from '@atmos/db'
import { createRedis } from '@atmos/queues'
import { schedulerConfigSchema } from './config.ts'
import { formatSummary, runOnce } from './run-once.ts'

const EX_TEMPFAIL = 75

export async function runOnceCommand(timeoutMs: number): Promise<number> {
  // A bad configuration exits 2, naming the field, as the services do (runCli).
  const config = loadConfig(schedulerConfigSchema)
  const db = createDb({ url: config.database.url, poolMax: 2 })
  const redis = createRedis(config.redis.url)
  try {
    const result = await runOnce({
      db,
      redis,
      prefix: config.redis.prefix,
      rate: config.scheduler.verifyRate,
      timeoutMs,
    })
    console.log(formatSummary(result))
    return result.counts.unfinished ? EX_TEMPFAIL : 0
  } finally {
    await redis.quit().catch(() => redis.disconnect())
    await db.$client.end()
  }
}
