import { type BaseConfig, ConfigError, loadConfig } from '@atmos/config'
import type { z } from 'zod'
import { routeProcessOutput } from './json-output.ts'
import { createLogger, type Logger } from './logger.ts'

export interface Service {
  start(): Promise<void>
  /** Stops accepting, drains in-flight work, closes pools. */
  destroy(): Promise<void>
  readonly logger: Logger
}

export type MainOptions<S extends z.ZodType<BaseConfig>> = {
  name: string
  schema: S
  create: (config: z.output<S>) => Promise<Service>
}

/**
 * A service's whole process life: load config (exit 2 with the offending fields when it
 * is invalid), create, start, and on SIGTERM or SIGINT destroy within the configured
 * shutdown timeout, exiting 0 when the drain finished and 1 when it did not.
 */
export async function runMain<S extends z.ZodType<BaseConfig>>(opts: MainOptions<S>): Promise<void> {
  let config: z.output<S>
  try {
    config = loadConfig(opts.schema)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${opts.name}: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }

  routeProcessOutput(createLogger(opts.name, config.log.level))

  let service: Service
  try {
    service = await opts.create(config)
    await service.start()
  } catch (err) {
    createLogger(opts.name, 'error').fatal({ err }, 'failed to start')
    process.exit(1)
  }

  const logger = service.logger
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without waiting for the drain')
      process.exit(1)
    }
    stopping = true
    logger.info({ signal }, 'shutting down')
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeout }, 'shutdown did not finish in time')
      process.exit(1)
    }, config.shutdownTimeout)
    deadline.unref()
    service.destroy().then(
      () => {
        logger.info('stopped')
        process.exit(0)
      },
      (err) => {
        logger.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('unhandledRejection', (err) => {
    // A Redis command cut off by a connection that was closed (a worker stopped mid start-up,
    // or Redis gone): bullmq leaves such promises unheard. The outage itself is said by the
    // dependency watch; a stack per cut-off command would bury it.
    if ((err as Error)?.message === 'Connection is closed.') {
      logger.debug({ err: (err as Error).message }, 'unhandled rejection')
      return
    }
    logger.error({ err }, 'unhandled rejection')
  })
}
