import { setTimeout as sleep } from 'node:timers/promises'
import { createPool, type Pool } from '@atmos/db'
import { deliverMessage, TypedQueue } from '@atmos/queues'
import { type BaseContext, closeBaseContext } from '@atmos/runtime'
import {
  createTestDatabase,
  type DnsZone,
  deletePrefix,
  MxSink,
  type MxSinkOptions,
  ServiceProcess,
  TEST_REDIS_URL,
  type TestDatabase,
  TestDnsServer,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import type { RelayConfig } from '../src/config.ts'
import { Delivery } from '../src/delivery/index.ts'
import { relayContext } from './helpers.ts'

const RELAY_ENTRY = new URL('../src/index.ts', import.meta.url)

/** A sink's loopback address, or its options (address in `host`). */
export type SinkSpec = string | (MxSinkOptions & { host: string })

/** Sinks on several loopback addresses sharing one port (the relay's mxPort is one port for every MX). */
async function startSinks(hosts: Record<string, SinkSpec>): Promise<{ port: number; sinks: Record<string, MxSink> }> {
  const sinks: Record<string, MxSink> = {}
  let port = 0
  for (const [name, spec] of Object.entries(hosts)) {
    const sink = new MxSink(typeof spec === 'string' ? { name, host: spec } : { name, ...spec })
    port = await sink.start(port)
    sinks[name] = sink
  }
  return { port, sinks }
}

/**
 * What a delivery test runs against: its own database and Redis prefix, MX sinks on loopback
 * addresses sharing one port, and a DNS server that points names at them.
 */
export type DeliveryWorld = {
  db: TestDatabase
  sql: Pool
  prefix: string
  dns: TestDnsServer
  sinks: Record<string, MxSink>
  mxPort: number
  /** The environment of a delivery-only relay wired to this world. */
  env: (extra?: Record<string, string>) => Record<string, string>
  /** A relay process with that environment, once its workers run; close() kills it if still running. */
  startProcess: (env: Record<string, string>) => Promise<ServiceProcess>
  close: () => Promise<void>
}

export async function startDeliveryWorld(
  name: string,
  sinkHosts: Record<string, SinkSpec>,
  zone: DnsZone,
): Promise<DeliveryWorld> {
  const prefix = testRedisPrefix(name)
  const db = await createTestDatabase()
  const sql = testPool(db.url)
  const dns = new TestDnsServer(zone)
  let sinks: Record<string, MxSink> = {}
  const processes: ServiceProcess[] = []
  const close = async () => {
    for (const p of processes) await p.stop('SIGKILL')
    for (const sink of Object.values(sinks)) await sink.close()
    await dns.close()
    await sql.end({ timeout: 5 })
    const redis = testRedis()
    await deletePrefix(redis, prefix)
    await redis.quit()
    await db.drop()
  }
  try {
    const started = await startSinks(sinkHosts)
    sinks = started.sinks
    await dns.start()
    const mxPort = started.port
    const env = (extra?: Record<string, string>) =>
      deliveryEnv({ databaseUrl: db.url, redisPrefix: prefix, dnsPort: dns.port, mxPort, extra })
    const startProcess = async (env: Record<string, string>) => {
      const proc = new ServiceProcess(RELAY_ENTRY, env)
      processes.push(proc)
      await proc.waitForLog((l) => l.msg === 'delivery workers started')
      return proc
    }
    return { db, sql, prefix, dns, sinks, mxPort, env, startProcess, close }
  } catch (err) {
    // The test's after() has no world to close: leave no database behind.
    await close()
    throw err
  }
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
    // The sinks are on loopback, which the relay refuses unless allowed.
    ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS: '127.0.0.0/8',
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
  const ctx = relayContext(env)
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

/** Another domain of a member (active, warming from now); its id. */
export async function seedDomain(sql: Pool, memberId: number, domain: string): Promise<number> {
  const [row] = await sql<{ id: string }[]>`
    insert into domains (member_id, domain, status, activated_at) values (${memberId}, ${domain}, 'active', now())
    returning id::text`
  return Number(row?.id)
}

/** The first domain a member holds (what seedMember gave it). */
export async function firstDomainId(sql: Pool, memberId: number): Promise<number> {
  const [row] = await sql<{ id: string }[]>`
    select id::text from domains where member_id = ${memberId} and removed_at is null order by id limit 1`
  return Number(row?.id)
}

/** An active member sending as `domain`. */
export async function seedMember(sql: Pool, domain: string): Promise<number> {
  memberSeq++
  const [row] = await sql<{ id: string }[]>`
    with m as (
      insert into members (did, status, activated_at)
      values (${`did:plc:delivery${memberSeq}${Date.now().toString(36)}`}, 'active', now())
      returning id)
    insert into domains (member_id, domain, status, activated_at) select id, ${domain}, 'active', now() from m
    returning member_id::text as id`
  return Number(row?.id)
}

/** A message spooled the way submission spools it: one recipient, signed body, VERP return path. */
export async function spoolMessage(
  sql: Pool,
  opts: {
    memberId: number
    to: string
    from?: string
    expiresInMs?: number
    subject?: string
    requireTls?: boolean
    /** Extra header lines. */
    headers?: string[]
  },
): Promise<{ messageId: string; recipientId: number }> {
  const from = opts.from ?? 'sender@member.example'
  const body = Buffer.from(
    [
      `From: <${from}>`,
      `To: <${opts.to}>`,
      `Subject: ${opts.subject ?? 'test'}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <${Math.random().toString(36).slice(2)}@member.example>`,
      ...(opts.headers ?? []),
      '',
      'Hello.',
      '',
    ].join('\r\n'),
  )
  return sql.begin(async (tx) => {
    const [m] = await tx<{ id: string }[]>`
      insert into messages (member_id, domain_id, envelope_from, return_path, size, body, expires_at, require_tls)
      values (${opts.memberId},
              (select id from domains where member_id = ${opts.memberId} and removed_at is null order by id limit 1), ${from}, ${`b+${Math.random().toString(36).slice(2)}@bounces.atmos.localhost`},
              ${body.length}, ${body}, now() + make_interval(secs => ${(opts.expiresInMs ?? 3_600_000) / 1000}),
              ${opts.requireTls ?? false})
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
