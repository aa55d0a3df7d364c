import { field, section } from '@atmos/config'
import type { z } from 'zod'

/**
 * The HTTP send API (`POST /v1/send`), served by processes with the submission role. Plain
 * HTTP: TLS is terminated by the ingress in front of it (it listens on loopback by default).
 */
export const apiSection = section({
  /** Off unless asked for, so that a deployment opens no port it has not routed and secured. */
  enabled: field.bool(false),
  host: field.string('127.0.0.1'),
  port: field.port(8587),
  /** Largest request body, in bytes; a bigger one is refused with 413 before it is read whole. */
  bodyLimit: field.int(1024 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
  /** Requests one API key may make in each `rateWindow`, counted in Redis across processes (per process while Redis is away). */
  rateLimit: field.int(600, { min: 1 }),
  rateWindow: field.duration('1m'),
  /** Attachments one request may carry (their bytes count against `bodyLimit`). */
  maxAttachments: field.int(10, { min: 0, max: 100 }),
  /** How long an Idempotency-Key's first answer is replayed. */
  idempotencyTtl: field.duration('24h'),
  /** The whole request (headers and body) must arrive within this (Node's requestTimeout): a slow sender holds no socket for long. */
  requestTimeout: field.duration('30s'),
})

export type ApiConfig = z.output<typeof apiSection>
