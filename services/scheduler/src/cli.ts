// Operator commands (`pnpm --filter @atmos/scheduler scheduler <command>`, or `node src/cli.ts`):
//
//   run-once [--timeout 10m]   re-verify every live attestation now through the labeler's
//                              verify queue (a labeler must be running), wait, and print a
//                              summary table; exit 0 when every verification finished, 75 when
//                              some did not within the timeout
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig, parseDuration } from '@atmos/config'
import { createDb } from '@atmos/db'
import { createRedis } from '@atmos/queues'
import { schedulerConfigSchema } from './config.ts'
import { formatSummary, runOnce } from './run-once.ts'

const EX_USAGE = 64
// As the services: a bad config exits 2, naming the field.
const EX_CONFIG = 2
const EX_TEMPFAIL = 75

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command !== 'run-once') {
    console.error('usage: scheduler run-once [--timeout 10m]')
    return EX_USAGE
  }
  const { values } = parseArgs({ args: rest, options: { timeout: { type: 'string', default: '10m' } } })
  const timeoutMs = parseDuration(values.timeout)
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    console.error(`--timeout: expected a duration such as "30s" or "10m", got ${JSON.stringify(values.timeout)}`)
    return EX_USAGE
  }
  let config: ReturnType<typeof loadConfig<typeof schedulerConfigSchema>>
  try {
    config = loadConfig(schedulerConfigSchema)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    console.error(err.message)
    return EX_CONFIG
  }
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

process.exitCode = await main(process.argv.slice(2))
