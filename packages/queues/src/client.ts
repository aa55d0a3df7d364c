import type { EventEmitter } from 'node:events'
import { type Job, type JobsOptions, Queue, UnrecoverableError, Worker, type WorkerOptions } from 'bullmq'
import { Redis, type RedisOptions } from 'ioredis'
import { InvalidPayloadError, type PayloadInputOf, type PayloadOf, parsePayload, type QueueDef } from './define.ts'
import { reportErrors } from './errors.ts'

export type RedisConnectionOptions = {
  url: string
  /** bullmq key prefix, e.g. the config's redis.prefix. */
  prefix: string
}

/**
 * An ioredis connection as bullmq needs it: a worker's blocking commands must never be
 * cut short by ioredis' per-request retry limit, so that limit is off.
 */
export function createRedis(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false, ...extra })
}

/** A producer for one queue: validates every payload before anything reaches Redis. */
export class TypedQueue<D extends QueueDef> {
  readonly def: D
  readonly queue: Queue

  constructor(def: D, connection: Redis, prefix: string) {
    this.def = def
    this.queue = new Queue(def.name, { connection, prefix, defaultJobOptions: def.defaultJobOptions })
    reportErrors(this.queue, { queue: def.name, role: 'queue' })
  }

  /** Throws InvalidPayloadError, and enqueues nothing, when the payload is off-contract. */
  async enqueue(payload: PayloadInputOf<D>, opts: JobsOptions = {}): Promise<Job> {
    const data = parsePayload(this.def, payload)
    return this.queue.add(this.def.name, data, opts)
  }

  /** Validates every payload first; enqueues all or nothing. */
  async enqueueBulk(items: Array<{ payload: PayloadInputOf<D>; opts?: JobsOptions }>): Promise<Job[]> {
    const jobs = items.map((i) => ({ name: this.def.name, data: parsePayload(this.def, i.payload), opts: i.opts }))
    return this.queue.addBulk(jobs)
  }

  async close(): Promise<void> {
    // bullmq's close drops every listener of its connection, yet a shared connection still
    // starting (Redis away) later emits 'error' from its start-up when the client ends; with
    // no listener that throw becomes an unhandled rejection. A listener that outlives close
    // absorbs it (the outage was reported while the queue was open).
    const connection = (this.queue as unknown as { connection?: EventEmitter }).connection
    try {
      await this.queue.close()
    } finally {
      connection?.on('error', () => {})
    }
  }
}

export type Processor<D extends QueueDef, R = unknown> = (payload: PayloadOf<D>, job: Job) => Promise<R>

/**
 * A consumer for one queue. A job whose data does not match the contract (written by an
 * older producer, or by hand) fails at once, unretried, with the schema's reason.
 */
export function createWorker<D extends QueueDef, R>(
  def: D,
  connection: Redis,
  prefix: string,
  processor: Processor<D, R>,
  opts: Omit<WorkerOptions, 'connection' | 'prefix'> = {},
): Worker {
  const worker = new Worker(
    def.name,
    async (job: Job) => {
      let payload: PayloadOf<D>
      try {
        payload = parsePayload(def, job.data)
      } catch (err) {
        if (err instanceof InvalidPayloadError) throw new UnrecoverableError(err.message)
        throw err
      }
      return processor(payload, job)
    },
    { connection, prefix, ...opts },
  )
  reportErrors(worker, { queue: def.name, role: 'worker' })
  return worker
}
