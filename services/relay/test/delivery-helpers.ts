import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '@atmos/config'
import { createPool, type Pool } from '@atmos/db'
import { deliverMessage, TypedQueue } from '@atmos/queues'
import { type BaseContext, closeBaseContext, createBaseContext, createLogger } from '@atmos/runtime'
import { TEST_REDIS_URL, testRedis } from '@atmos/testkit'
import { SMTPServer, type SMTPServerSession } from 'smtp-server'
import { type RelayConfig, relayConfigSchema } from '../src/config.ts'
import { Delivery } from '../src/delivery/index.ts'

/** What a sink answers a recipient (at RCPT) or a message (after DATA): undefined accepts. */
export type SinkReply = { code: number; text: string } | undefined

export type Received = { from: string; to: string; body: string; sink: string; secure: boolean }

/**
 * A recipient's MX on loopback: smtp-server with its built-in self-signed certificate (so
 * the relay's STARTTLS must not insist on a valid one). It records every message, and the
 * most sessions it ever had open at once.
 */
export class MxSink {
  readonly name: string
  readonly host: string
  readonly received: Received[] = []
  open = 0
  maxOpen = 0
  sessions = 0
  /** Messages accepted per session id: shows how many each session carried. */
  readonly perSession = new Map<string, number>()
  /** Per-recipient script: called on each RCPT, before DATA is accepted. */
  onRcpt: (to: string, session: SMTPServerSession) => SinkReply = () => undefined
  /** Per-message script: called when DATA ends. */
  onMessage: (to: string) => SinkReply = () => undefined
  /** Milliseconds to hold the reply to DATA (keeps sessions busy for shaping tests). */
  dataDelayMs = 0
  private server: SMTPServer | undefined

  constructor(name: string, host: string) {
    this.name = name
    this.host = host
  }

  async start(port: number): Promise<number> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH'],
      logger: false,
      onConnect: (_session, cb) => {
        this.open++
        this.sessions++
        this.maxOpen = Math.max(this.maxOpen, this.open)
        cb()
      },
      onClose: () => {
        this.open--
      },
      onRcptTo: (address, session, cb) => {
        const reply = this.onRcpt(address.address.toLowerCase(), session)
        if (reply) cb(Object.assign(new Error(reply.text), { responseCode: reply.code }))
        else cb()
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => chunks.push(c))
        stream.on('end', async () => {
          if (this.dataDelayMs) await sleep(this.dataDelayMs)
          const to = session.envelope.rcptTo[0]?.address.toLowerCase() ?? ''
          const reply = this.onMessage(to)
          if (reply) {
            cb(Object.assign(new Error(reply.text), { responseCode: reply.code }))
            return
          }
          const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
          this.perSession.set(session.id, (this.perSession.get(session.id) ?? 0) + 1)
          this.received.push({
            from,
            to,
            body: Buffer.concat(chunks).toString('utf8'),
            sink: this.name,
            secure: session.secure,
          })
          cb()
        })
      },
    })
    server.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, this.host, () => resolve())
    })
    this.server = server
    const address = server.server.address()
    return typeof address === 'object' && address ? address.port : port
  }

  to(address: string): Received[] {
    return this.received.filter((r) => r.to === address)
  }

  async close(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** Sinks on several loopback addresses sharing one port (the relay's mxPort is one port for every MX). */
export async function startSinks(
  hosts: Record<string, string>,
): Promise<{ port: number; sinks: Record<string, MxSink> }> {
  const sinks: Record<string, MxSink> = {}
  let port = 0
  for (const [name, host] of Object.entries(hosts)) {
    const sink = new MxSink(name, host)
    port = await sink.start(port)
    sinks[name] = sink
  }
  return { port, sinks }
}

/** The environment of a relay that only delivers, wired to the test's Postgres, Redis, DNS and MX port. */
export function deliveryEnv(opts: {
  databaseUrl: string
  redisPrefix: string
  dnsPort: number
  mxPort: number
  extra?: Record<string, string>
}): Record<string, string> {
  return {
    ATMOS_DATABASE_URL: opts.databaseUrl,
    ATMOS_REDIS_URL: TEST_REDIS_URL,
    ATMOS_REDIS_PREFIX: opts.redisPrefix,
    ATMOS_HTTP_PORT: '0',
    ATMOS_LOG_LEVEL: 'info',
    ATMOS_RELAY_ROLES: 'delivery',
    ATMOS_RELAY_DELIVERY_MX_PORT: String(opts.mxPort),
    ATMOS_RELAY_DELIVERY_DNS_SERVERS: '127.0.0.1',
    ATMOS_RELAY_DELIVERY_DNS_PORT: String(opts.dnsPort),
    ATMOS_RELAY_DELIVERY_DNS_TIMEOUT: '500ms',
    ATMOS_RELAY_DELIVERY_DNS_TRIES: '1',
    ATMOS_RELAY_DELIVERY_DNS_CACHE_TTL: '0',
    ATMOS_RELAY_DELIVERY_CONNECT_TIMEOUT: '2s',
    ATMOS_RELAY_DELIVERY_GREETING_TIMEOUT: '2s',
    ATMOS_RELAY_DELIVERY_SOCKET_TIMEOUT: '5s',
    ATMOS_RELAY_DELIVERY_RETRY_SCHEDULE: '100ms,200ms',
    ATMOS_RELAY_DELIVERY_CLAIM_LEASE: '2s',
    ATMOS_RELAY_DELIVERY_RECONCILE_INTERVAL: '500ms',
    ATMOS_RELAY_DELIVERY_SHAPING_SLOT_LEASE: '2s',
    ATMOS_RELAY_DELIVERY_SHAPING_SLOT_WAIT: '1s',
    ATMOS_RELAY_DELIVERY_SHAPING_IDLE_TIMEOUT: '200ms',
    ATMOS_RELAY_DELIVERY_SHAPING_SLOW_DOWN_FOR: '2s',
    ATMOS_RELAY_DELIVERY_SHAPING_SLOW_DOWN_RATE: '20',
    ...opts.extra,
  }
}

/** Delivery workers in this process, built the way the relay builds them. */
export async function startDelivery(
  env: Record<string, string>,
): Promise<{ delivery: Delivery; ctx: BaseContext<RelayConfig>; stop: () => Promise<void> }> {
  const config = loadConfig(relayConfigSchema, { env })
  const ctx = createBaseContext('relay', config, {
    logger: createLogger('relay', (process.env.ATMOS_TEST_LOG_LEVEL ?? 'silent') as 'info'),
  })
  const delivery = new Delivery(ctx)
  await delivery.start()
  return {
    delivery,
    ctx,
    stop: async () => {
      await delivery.stop()
      await closeBaseContext(ctx)
    },
  }
}

let memberSeq = 0

/** An active member sending as `domain`. */
export async function seedMember(sql: Pool, domain: string): Promise<number> {
  memberSeq++
  const [row] = await sql<{ id: string }[]>`
    insert into members (did, domain, status, activated_at)
    values (${`did:plc:delivery${memberSeq}${Date.now().toString(36)}`}, ${domain}, 'active', now())
    returning id::text`
  return Number(row?.id)
}

/** A message spooled the way submission spools it: one recipient, signed body, VERP return path. */
export async function spoolMessage(
  sql: Pool,
  opts: { memberId: number; to: string; from?: string; expiresInMs?: number; subject?: string },
): Promise<{ messageId: string; recipientId: number }> {
  const from = opts.from ?? 'sender@member.example'
  const body = Buffer.from(
    [
      `From: <${from}>`,
      `To: <${opts.to}>`,
      `Subject: ${opts.subject ?? 'test'}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <${Math.random().toString(36).slice(2)}@member.example>`,
      '',
      'Hello.',
      '',
    ].join('\r\n'),
  )
  return sql.begin(async (tx) => {
    const [m] = await tx<{ id: string }[]>`
      insert into messages (member_id, envelope_from, return_path, size, body, expires_at)
      values (${opts.memberId}, ${from}, ${`b+${Math.random().toString(36).slice(2)}@bounces.atmos.localhost`},
              ${body.length}, ${body}, now() + make_interval(secs => ${(opts.expiresInMs ?? 3_600_000) / 1000}))
      returning id`
    const [r] = await tx<{ id: string }[]>`
      insert into message_recipients (message_id, address, domain)
      values (${String(m?.id)}, ${opts.to}, ${String(opts.to.split('@')[1]).toLowerCase()})
      returning id::text`
    return { messageId: String(m?.id), recipientId: Number(r?.id) }
  }) as Promise<{ messageId: string; recipientId: number }>
}

/** Enqueues deliver-message as submission does after the 250. */
export async function enqueueDelivery(prefix: string, messageIds: string[]): Promise<void> {
  const redis = testRedis()
  const queue = new TypedQueue(deliverMessage, redis, prefix)
  try {
    for (const messageId of messageIds) await queue.enqueue({ messageId })
  } finally {
    await queue.close()
    await redis.quit()
  }
}

export function testPool(url: string): Pool {
  return createPool({ url, poolMax: 3 })
}

export type RecipientRow = { state: string; attempts: number; last_reply: string | null }

export async function recipient(sql: Pool, id: number): Promise<RecipientRow | undefined> {
  const [row] = await sql<RecipientRow[]>`select state, attempts, last_reply from message_recipients where id = ${id}`
  return row
}

/** Polls until `check` returns a value (not undefined), or fails naming what it waited for. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** Waits until the recipient reaches one of the final states; returns its row. */
export function final(sql: Pool, id: number, timeoutMs = 15_000): Promise<RecipientRow> {
  return eventually(
    async () => {
      const row = await recipient(sql, id)
      return row && !['queued', 'deferred'].includes(row.state) ? row : undefined
    },
    timeoutMs,
    `recipient ${id} to reach a final state`,
  )
}
