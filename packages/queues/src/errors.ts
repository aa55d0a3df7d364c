import type { EventEmitter } from 'node:events'

/** Where bullmq's own errors go: the service's logger, set once per process by @atmos/runtime. */
export type QueueErrorHandler = (err: Error, where: { queue: string; role: 'queue' | 'worker' }) => void

/** Until a service sets its logger (operator CLIs never do): one plain line, not a stack trace. */
const printError: QueueErrorHandler = (err, where) =>
  console.error(`bullmq ${where.role} ${where.queue}: ${err.message}`)

let handler: QueueErrorHandler = printError

/**
 * bullmq reports its own failures (a lock it could not renew, a job's keys gone after Redis
 * lost its data, a connection dropped) as 'error' events on each Queue and Worker. With no
 * listener, Node would throw them and bullmq falls back to console.error: raw stack traces
 * among the JSON log lines. Every queue and worker made here listens, and hands them to this.
 */
export function setQueueErrorHandler(fn: QueueErrorHandler | undefined): void {
  handler = fn ?? printError
}

/** Listens for 'error' on a bullmq Queue or Worker; never throws. */
export function reportErrors(emitter: EventEmitter, where: { queue: string; role: 'queue' | 'worker' }): void {
  emitter.on('error', (err: Error) => {
    try {
      handler(err, where)
    } catch {
      // A logger that throws must not take the worker down with it.
    }
  })
}
