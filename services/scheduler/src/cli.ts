// Operator commands (`pnpm --filter @atmos/scheduler scheduler <command>`, or `node src/cli.ts`):
//
//   run-once [--timeout 10m]   re-verify every live attestation now through the labeler's
//                              verify queue (a labeler must be running), wait, and print a
//                              summary table; exit 0 when every verification finished, 75 when
//                              some did not within the timeout
import { command, loadConfig, parseDuration, runCli, UsageError } from '@atmos/config'
import { createDb } from '@atmos/db'
import { createRedis } from '@atmos/queues'
import { schedulerConfigSchema } from './config.ts'
import { formatSummary, runOnce } from './run-once.ts'

const EX_TEMPFAIL = 75

const runOnceCommand = command({
  usage: '[--timeout 10m]',
  help:
    "Re-verifies every live attestation now through the labeler's verify queue (a labeler must be\n" +
    'running), waits, and prints a summary table. Exit 0 when every verification finished, 75 when\n' +
    'some did not within the timeout.',
  options: {
    timeout: {
      type: 'string',
      value: 'DURATION',
      help: 'how long to wait for the verifications, e.g. 30s or 10m; default 10m',
    },
  },
  async run({ values }) {
    const timeout = values.timeout ?? '10m'
    const timeoutMs = parseDuration(timeout)
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new UsageError(`--timeout: expected a duration such as "30s" or "10m", got ${JSON.stringify(timeout)}`)
    }
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
  },
})

process.exitCode = await runCli('scheduler', { 'run-once': runOnceCommand }, process.argv.slice(2))
