import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDb, type Db, members, type WebhookEventType } from '@atmos/db'
import { type Keyring, newKekLine, parseKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { createEndpoint } from '@atmos/webhook-events'
import { webhooksConfigSchema } from '../src/config.ts'
import type { Resolve } from '../src/dispatch/safe-post.ts'
import { WebhooksService } from '../src/service.ts'

export type Harness = { database: TestDatabase; db: Db; keyring: Keyring; kekFile: string; close: () => Promise<void> }

export async function harness(): Promise<Harness> {
  const database = await createTestDatabase()
  const db = createDb({ url: database.url, poolMax: 4 })
  const line = newKekLine()
  const dir = await mkdtemp(join(tmpdir(), 'atmos-webhooks-'))
  const kekFile = join(dir, 'kek')
  writeFileSync(kekFile, `${line}\n`, { mode: 0o600 })
  return {
    database,
    db,
    keyring: parseKeyring(line),
    kekFile,
    close: async () => {
      await db.$client.end({ timeout: 5 })
      await database.drop()
    },
  }
}

/** A webhooks service in this process, on the harness' database, with a fast schedule unless told. */
export async function startService(
  h: Harness,
  own: Record<string, unknown> = {},
  resolve?: Resolve,
): Promise<WebhooksService> {
  const config = webhooksConfigSchema.parse({
    database: { url: h.database.url, poolMax: 4 },
    http: { port: 0 },
    log: { level: process.env.ATMOS_LOG_LEVEL ?? 'silent' },
    webhooks: {
      kekFile: h.kekFile,
      retrySchedule: ['100ms', '200ms', '300ms'],
      pollInterval: '50ms',
      allowHttp: true,
      allowPrivate: true,
      ...own,
    },
  })
  const service = await WebhooksService.create(config, { resolve })
  await service.start()
  await service.whenStarted()
  return service
}

export async function addMember(db: Db): Promise<{ id: number; did: string }> {
  const [m] = await db
    .insert(members)
    .values({ did: `did:plc:wh${randomBytes(6).toString('hex')}`, status: 'active', activatedAt: new Date() })
    .returning({ id: members.id, did: members.did })
  return m!
}

export async function addEndpoint(
  h: Harness,
  memberId: number,
  url: string,
  events: WebhookEventType[] = ['message.delivered'],
): Promise<{ id: number; secret: string }> {
  return createEndpoint(h.db.$client, h.keyring, { memberId, url, events })
}

export type Received = { headers: IncomingMessage['headers']; body: string; at: number }

/** A loopback receiver: answers each request with `answer(n)` (n from 1), records what came. */
export class Receiver {
  readonly received: Received[] = []
  private server: Server | undefined
  answer: (n: number) => { status: number; headers?: Record<string, string> } | 'hang' = () => ({ status: 204 })

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        this.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() })
        const a = this.answer(this.received.length)
        if (a === 'hang') return
        res.writeHead(a.status, a.headers ?? {})
        res.end('ok')
      })
    })
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections()
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

export type DeliveryRow = {
  state: string
  attempts: number
  last_status: number | null
  last_error: string | null
  delivered_at: Date | null
}

export async function delivery(db: Db, eventId: string): Promise<DeliveryRow | undefined> {
  const [row] = await db.$client<DeliveryRow[]>`
    select state, attempts, last_status, last_error, delivered_at from webhook_deliveries where event_id = ${eventId}`
  return row
}
