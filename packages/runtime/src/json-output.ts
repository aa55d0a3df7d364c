import { format } from 'node:util'
import { setQueueErrorHandler } from '@atmos/queues'
import { isNetworkError } from './dependency-error.ts'
import type { Logger } from './logger.ts'

/** How long the same queue error is counted instead of logged again (an outage repeats it every few seconds). */
const REPEAT_MS = 10_000

/**
 * bullmq's own errors (could not renew lock, Missing key for job, a dropped connection) as
 * warnings on the service's logger, each distinct message at most once per REPEAT_MS with
 * how many times it came meanwhile.
 */
export function logQueueErrors(logger: Logger): void {
  const seen = new Map<string, { at: number; repeats: number }>()
  setQueueErrorHandler((err, where) => {
    // Redis unreachable: the dependency watch says so once; each queue's retries stay quiet.
    if (isNetworkError(err)) {
      logger.debug({ queue: where.queue, role: where.role, err: err.message }, 'queue error')
      return
    }
    const key = `${where.role}:${where.queue}:${err.message}`
    const now = Date.now()
    const last = seen.get(key)
    if (last && now - last.at < REPEAT_MS) {
      last.repeats++
      return
    }
    if (seen.size > 1000) seen.clear()
    seen.set(key, { at: now, repeats: 0 })
    logger.warn(
      { queue: where.queue, role: where.role, err: err.message, repeatsSinceLast: last?.repeats ?? 0 },
      'queue error',
    )
  })
}

const CONSOLE_LEVELS = {
  log: 'info',
  info: 'info',
  debug: 'debug',
  warn: 'warn',
  error: 'error',
  trace: 'debug',
} as const

/**
 * Every line a service writes is a JSON log line. Libraries that print for themselves
 * (bullmq's console.warn about the Redis version or eviction policy, ioredis' "Unhandled
 * error event"), Node's process warnings and an exception nobody caught are turned into
 * log lines on `logger` instead of raw text and stack traces on stdout and stderr.
 */
export function routeProcessOutput(logger: Logger): void {
  for (const [method, level] of Object.entries(CONSOLE_LEVELS)) {
    ;(console as unknown as Record<string, (...args: unknown[]) => void>)[method] = (...args: unknown[]) => {
      const err = args.find((a): a is Error => a instanceof Error)
      const msg = err && args.length === 1 ? err.message : format(...args)
      logger[level]({ source: 'console', ...(err ? { err } : {}) }, msg)
    }
  }
  // Node prints warnings itself from its own 'warning' listener: replace that listener.
  process.removeAllListeners('warning')
  process.on('warning', (w) =>
    logger.warn({ source: 'process', warning: w.name, code: (w as { code?: string }).code }, w.message),
  )
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception')
    process.exit(1)
  })
}
