import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type WebSocket, WebSocketServer } from 'ws'

// A Jetstream-shaped server on loopback: the same JSON events, `wantedCollections` and
// `cursor` (time_us) query parameters, replay from the cursor, then live. Identity and
// account events go to every client whatever it asked for, as the real one does.

export type JetstreamCommit = {
  rev: string
  operation: 'create' | 'update' | 'delete'
  collection: string
  rkey: string
  record?: unknown
  cid?: string
}

export type JetstreamEvent =
  | { did: string; time_us: number; kind: 'commit'; commit: JetstreamCommit }
  | {
      did: string
      time_us: number
      kind: 'identity'
      identity: { did: string; handle?: string; seq: number; time: string }
    }
  | {
      did: string
      time_us: number
      kind: 'account'
      account: { did: string; active: boolean; status?: string; seq: number; time: string }
    }

type Client = { socket: WebSocket; collections: string[] }

export class JetstreamServer {
  readonly log: JetstreamEvent[] = []
  /** The query of every connection, for tests of resume and filtering. */
  readonly connections: Array<{ cursor: number | undefined; wantedCollections: string[] }> = []
  private readonly clients = new Set<Client>()
  private readonly http: Server
  private readonly wss: WebSocketServer
  private lastTimeUs = 0
  private seq = 0

  constructor() {
    this.http = createServer((_req, res) => {
      res.writeHead(426).end('websocket only')
    })
    this.wss = new WebSocketServer({ server: this.http, path: '/subscribe' })
    this.wss.on('connection', (socket, req) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const collections = url.searchParams.getAll('wantedCollections')
      const cursorParam = url.searchParams.get('cursor')
      const cursor = cursorParam === null ? undefined : Number(cursorParam)
      this.connections.push({ cursor, wantedCollections: collections })
      const client: Client = { socket, collections }
      if (cursor !== undefined) {
        for (const event of this.log) if (event.time_us >= cursor && this.wants(client, event)) this.send(client, event)
      }
      this.clients.add(client)
      socket.on('close', () => this.clients.delete(client))
    })
  }

  /** `port`: a fixed one, to bring a server back where a stopped one was (an outage that ends). */
  async start(port = 0): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject)
      this.http.listen(port, '127.0.0.1', () => {
        this.http.off('error', reject)
        resolve()
      })
    })
    return this
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port
  }

  get url(): string {
    const a = this.http.address() as AddressInfo
    return `ws://127.0.0.1:${a.port}/subscribe`
  }

  get clientCount(): number {
    return this.clients.size
  }

  /** Microsecond timestamps that only go up, as Jetstream's do. */
  private nextTimeUs(): number {
    this.lastTimeUs = Math.max(this.lastTimeUs + 1, Date.now() * 1000)
    return this.lastTimeUs
  }

  private wants(client: Client, event: JetstreamEvent): boolean {
    if (event.kind !== 'commit' || client.collections.length === 0) return true
    return client.collections.includes(event.commit.collection)
  }

  private send(client: Client, event: JetstreamEvent | string) {
    client.socket.send(typeof event === 'string' ? event : JSON.stringify(event))
  }

  publish(event: JetstreamEvent): JetstreamEvent {
    this.log.push(event)
    for (const client of this.clients) if (this.wants(client, event)) this.send(client, event)
    return event
  }

  commit(did: string, commit: Omit<JetstreamCommit, 'rev'> & { rev?: string }): JetstreamEvent {
    return this.publish({
      did,
      time_us: this.nextTimeUs(),
      kind: 'commit',
      commit: { rev: commit.rev ?? `3l${Date.now().toString(36)}`, ...commit },
    })
  }

  identity(did: string, handle?: string): JetstreamEvent {
    return this.publish({
      did,
      time_us: this.nextTimeUs(),
      kind: 'identity',
      identity: { did, handle, seq: ++this.seq, time: new Date().toISOString() },
    })
  }

  account(did: string, active: boolean, status?: string): JetstreamEvent {
    return this.publish({
      did,
      time_us: this.nextTimeUs(),
      kind: 'account',
      account: { did, active, status, seq: ++this.seq, time: new Date().toISOString() },
    })
  }

  /** A frame that is not a Jetstream event (malformed JSON, wrong shape). */
  sendRaw(text: string): void {
    for (const client of this.clients) this.send(client, text)
  }

  /** Drops every connection, as a Jetstream restart or a network cut would. */
  dropConnections(): void {
    for (const client of this.clients) client.socket.terminate()
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.socket.terminate()
    await new Promise<void>((resolve) => this.wss.close(() => resolve()))
    await new Promise<void>((resolve) => this.http.close(() => resolve()))
  }
}
