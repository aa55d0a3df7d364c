import type { JobsOptions } from 'bullmq'
import type { z } from 'zod'

/** A queue contract: its name, the zod schema of its payload, and its default job options. */
export type QueueDef<Name extends string = string, Schema extends z.ZodType = z.ZodType> = {
  name: Name
  payload: Schema
  /** Why the queue exists and who produces and consumes it. */
  description: string
  defaultJobOptions: JobsOptions
}

export type PayloadOf<D extends QueueDef> = z.output<D['payload']>
export type PayloadInputOf<D extends QueueDef> = z.input<D['payload']>

export function defineQueue<const Name extends string, Schema extends z.ZodType>(
  def: QueueDef<Name, Schema>,
): QueueDef<Name, Schema> {
  if (!/^[a-z][a-z0-9-]*$/.test(def.name)) throw new Error(`queue name must be kebab-case: ${def.name}`)
  return def
}

/** A payload that does not match its queue's schema, at enqueue or at processing. */
export class InvalidPayloadError extends Error {
  override name = 'InvalidPayloadError'
  readonly queue: string
  readonly issues: z.core.$ZodIssue[]
  constructor(queue: string, error: z.ZodError) {
    const details = error.issues.map((i) => `${i.path.map(String).join('.') || '(payload)'}: ${i.message}`)
    super(`invalid payload for queue ${queue}: ${details.join('; ')}`)
    this.queue = queue
    this.issues = error.issues
  }
}

export function parsePayload<D extends QueueDef>(def: D, data: unknown): PayloadOf<D> {
  const result = def.payload.safeParse(data)
  if (!result.success) throw new InvalidPayloadError(def.name, result.error)
  return result.data as PayloadOf<D>
}
