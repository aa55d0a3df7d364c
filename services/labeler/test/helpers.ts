import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '@atmos/config'
import { type Db, domains, ingestCursors, members } from '@atmos/db'
import { createSigningKeyFile, decodeFrame, type Frame } from '@atmos/labels'
import {
  createTestDatabase,
  type DnsZone,
  dkimPublicKey,
  goodMailZone,
  JetstreamServer,
  PlcDirectoryServer,
  TEST_REDIS_URL,
  TestDnsServer,
  testRedisPrefix,
} from '@atmos/testkit'
import { AtpAgent } from '@atproto/api'
import WebSocket from 'ws'
import { labelerConfigSchema } from '../src/config.ts'
import type { ContextOptions } from '../src/context.ts'
import { LabelerService } from '../src/service.ts'

export const ATTESTATION = 'email.atmos.attestation'

/** Environment for a labeler wired to loopback peers, with a fresh signing key. */
export async function labelerEnv(opts: {
  databaseUrl: string
  jetstreamUrl: string
  dnsPort: number
  plcUrl: string
}): Promise<{ env: Record<string, string>; didKey: string }> {
  const keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-labeler-')), 'label-signing.key')
  const didKey = (await createSigningKeyFile(keyFile)).did()
  return {
    didKey,
    env: {
      ATMOS_DATABASE_URL: opts.databaseUrl,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: testRedisPrefix('labeler'),
      ATMOS_HTTP_PORT: '0',
      ATMOS_LOG_LEVEL: 'warn',
      ATMOS_LABELER_SIGNING_KEY_FILE: keyFile,
      ATMOS_LABELER_XRPC_PORT: '0',
      ATMOS_LABELER_INGEST_JETSTREAM_URL: opts.jetstreamUrl,
      ATMOS_LABELER_INGEST_RECONNECT_MIN: '100ms',
      ATMOS_LABELER_INGEST_RECONNECT_MAX: '1s',
      ATMOS_LABELER_VERIFY_DNS_SERVERS: '127.0.0.1',
      ATMOS_LABELER_VERIFY_DNS_PORT: String(opts.dnsPort),
      // A loopback answer comes in microseconds, but a busy two-core machine can stall the test's own
      // DNS server for seconds: a short wait turns a pass into temperror and a retry minutes later.
      ATMOS_LABELER_VERIFY_DNS_TIMEOUT: '5s',
      ATMOS_LABELER_VERIFY_DNS_TRIES: '1',
      // A temporary error is retried as in production, only sooner: a stalled loopback peer on a
      // busy machine is retried within seconds, not after the production 5 minutes.
      ATMOS_LABELER_VERIFY_RETRY_MIN: '1s',
      ATMOS_LABELER_VERIFY_RETRY_MAX: '5s',
      ATMOS_LABELER_VERIFY_PLC_URL: opts.plcUrl,
    },
  }
}

export function attestationRecord(domain: string, selectors = ['atmos1']) {
  return {
    $type: ATTESTATION,
    domain,
    dkimSelectors: selectors,
    relayMember: true,
    createdAt: new Date().toISOString(),
  }
}

/**
 * A mail domain as the relay sets one up: an RSA key at `<stem>r` and an Ed25519 key at
 * `<stem>e` (RFC 8463), and everything else goodMailZone has.
 */
export function twoKeyMailZone(domain: string, did: string, stem = 'atmos1'): DnsZone {
  const { [`atmos1._domainkey.${domain}`]: _, ...zone } = goodMailZone(domain, did)
  return {
    ...zone,
    [`${stem}r._domainkey.${domain}`]: { TXT: [`v=DKIM1; k=rsa; p=${dkimPublicKey('rsa', 2048)}`] },
    [`${stem}e._domainkey.${domain}`]: { TXT: [`v=DKIM1; k=ed25519; p=${dkimPublicKey('ed25519')}`] },
  }
}

/**
 * An active relay member holding these domains in the relay (as the relay's enrolment
 * writes them): the members row and one active domains row each.
 */
export async function relayMember(
  db: Db,
  did: string,
  names: string[],
): Promise<{ memberId: number; domainIds: number[] }> {
  const [member] = await db
    .insert(members)
    .values({ did, status: 'active', activatedAt: new Date() })
    .returning({ id: members.id })
  const rows = await db
    .insert(domains)
    .values(
      names.map((domain) => ({ memberId: member!.id, domain, status: 'active' as const, activatedAt: new Date() })),
    )
    .returning({ id: domains.id })
  return { memberId: member!.id, domainIds: rows.map((r) => r.id) }
}

export type QueriedLabel = {
  src: string
  uri: string
  val: string
  neg?: boolean
  cts: string
  exp?: string
  sig: { $bytes: string }
}

export async function queryLabels(xrpcUrl: string, pattern: string): Promise<QueriedLabel[]> {
  const res = await fetch(
    `${xrpcUrl}/xrpc/com.atproto.label.queryLabels?uriPatterns=${encodeURIComponent(pattern)}&limit=250`,
  )
  if (res.status !== 200) throw new Error(`queryLabels ${res.status}: ${await res.text()}`)
  return ((await res.json()) as { labels: QueriedLabel[] }).labels
}

/** Polls until `check` returns a value, or fails with the last error. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
}

export type IngestGauges = { connected: number; lag: number; events: number }

/** The ingest gauges as a scrape of the labeler's /metrics shows them (events: all kinds and outcomes). */
export async function ingestGauges(service: LabelerService): Promise<IngestGauges> {
  const text = await (await fetch(`http://127.0.0.1:${service.ctx.ops.address!.port}/metrics`)).text()
  const samples = (name: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name}{`))
      .map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)))
  const one = (name: string) => {
    const [value] = samples(name)
    if (value === undefined) throw new Error(`${name} is not exported`)
    return value
  }
  return {
    connected: one('atmos_labeler_ingest_connected'),
    lag: one('atmos_labeler_ingest_lag_seconds'),
    events: samples('atmos_labeler_ingest_events_total').reduce((a, b) => a + b, 0),
  }
}

/** The ingest gauges once `ok` holds for them (polled: the condition, not a delay, is what a test waits on). */
export function ingestGaugesWhen(
  service: LabelerService,
  ok: (g: IngestGauges) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<IngestGauges> {
  return eventually(
    async () => {
      const g = await ingestGauges(service)
      return ok(g) ? g : undefined
    },
    timeoutMs,
    what,
  )
}

/**
 * Waits until a labeler reading `pdsUrl`'s firehose has taken an event. A fresh labeler
 * starts live, so what is written before its subscription is up would be missed; a new
 * account emits identity and account events that, though not ours, move the saved cursor.
 * One probe account at a time, each given two seconds to show.
 */
export async function firehoseLive(service: LabelerService, pdsUrl: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const cursor = async () => (await service.ctx.db.select().from(ingestCursors).limit(1))[0]
  for (let n = 0; Date.now() < deadline; n++) {
    const handle = `probe${n}-${Math.random().toString(36).slice(2, 8)}.test`
    await new AtpAgent({ service: pdsUrl }).createAccount({
      email: `${handle}@mail.test`,
      handle,
      password: 'correct horse battery',
    })
    const seen = await eventually(cursor, 2_000, 'cursor').catch(() => undefined)
    if (seen) return
  }
  throw new Error(`the firehose subscription to ${pdsUrl} took no event in ${timeoutMs} ms`)
}

/** A plain WebSocket subscriber that decodes every frame itself. */
export class LabelSubscriber {
  readonly frames: Frame[] = []
  readonly socket: WebSocket
  closed = false

  constructor(xrpcUrl: string, cursor?: number) {
    const url = `${xrpcUrl.replace(/^http/, 'ws')}/xrpc/com.atproto.label.subscribeLabels${cursor === undefined ? '' : `?cursor=${cursor}`}`
    this.socket = new WebSocket(url)
    this.socket.on('message', (data: Buffer) => this.frames.push(decodeFrame(new Uint8Array(data))))
    this.socket.on('close', () => {
      this.closed = true
    })
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('open', () => resolve())
      this.socket.once('error', reject)
    })
  }

  labels(): Array<{ seq: number; label: Record<string, unknown> & { sig: Uint8Array } }> {
    return this.frames.flatMap((f) =>
      f.header.op === 1
        ? ((f.body as { seq: number; labels: Array<Record<string, unknown> & { sig: Uint8Array }> }).labels ?? []).map(
            (label) => ({
              seq: (f.body as { seq: number }).seq,
              label,
            }),
          )
        : [],
    )
  }

  close(): void {
    this.socket.close()
  }
}

/** A labeler in this process, wired to its own database and loopback DNS, PLC and Jetstream. */
export type LabelerHarness = {
  service: LabelerService
  xrpc: string
  didKey: string
  dns: TestDnsServer
  plc: PlcDirectoryServer
  jetstream: JetstreamServer
  close: () => Promise<void>
}

export async function startLabeler(
  zone: DnsZone,
  extraEnv: Record<string, string> = {},
  opts: ContextOptions = {},
): Promise<LabelerHarness> {
  const tdb = await createTestDatabase()
  const dns = new TestDnsServer(zone)
  await dns.start()
  const plc = await new PlcDirectoryServer().start()
  const jetstream = await new JetstreamServer().start()
  const { env, didKey } = await labelerEnv({
    databaseUrl: tdb.url,
    jetstreamUrl: jetstream.url,
    dnsPort: dns.port,
    plcUrl: plc.url,
  })
  const service = await LabelerService.create(loadConfig(labelerConfigSchema, { env: { ...env, ...extraEnv } }), opts)
  await service.start()
  await service.whenStarted()
  await eventually(async () => (jetstream.clientCount > 0 ? true : undefined), 10_000, 'jetstream connection')
  return {
    service,
    xrpc: service.xrpcUrl!,
    didKey,
    dns,
    plc,
    jetstream,
    close: async () => {
      await service.destroy()
      await jetstream.close()
      await plc.close()
      await dns.close()
      await tdb.drop()
    },
  }
}
