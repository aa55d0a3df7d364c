export type { Job, Worker } from 'bullmq'
export { DelayedError } from 'bullmq'
export { createRedis, createWorker, type Processor, type RedisConnectionOptions, TypedQueue } from './client.ts'
export * from './contracts.ts'
export {
  defineQueue,
  InvalidPayloadError,
  type PayloadInputOf,
  type PayloadOf,
  parsePayload,
  type QueueDef,
} from './define.ts'
export { type QueueErrorHandler, reportErrors, setQueueErrorHandler } from './errors.ts'
