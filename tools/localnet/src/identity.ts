import { mkdirSync } from 'node:fs'
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { ensureDatabase } from '@atmos/db'
import { AtpAgent } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'
import { PDS } from '@atproto/pds'
import * as plc from '@did-plc/server'
import { readJson, secretFile, writeJson } from './state.ts'

// The atproto half of the network: a PLC directory on Postgres (a database of its own, so
// that DIDs outlive the stack like the members' rows that name them) and a PDS whose data
// directory and secrets live in the state directory, with one demo account made once.

/** Handles the PDS gives out; `.test` is reserved (RFC 2606) and never resolves elsewhere. */
export const HANDLE_DOMAIN = '.test'

export type DemoAccount = { did: string; handle: string; email: string; password: string }

/** A free port on loopback, for servers that must know their port before they listen (the PDS's URL holds it). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** An HTTP server that can be closed at once, websockets (the firehose) included. */
function tracked(server: Server): () => Promise<void> {
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  return async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

async function listening(server: Server): Promise<void> {
  if (server.listening) return
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve)
    server.once('error', reject)
  })
}

export class LocalPlc {
  readonly url: string
  private readonly db: plc.Database
  private readonly close: () => Promise<void>

  private constructor(url: string, db: plc.Database, close: () => Promise<void>) {
    this.url = url
    this.db = db
    this.close = close
  }

  /** Creates the database when missing and brings its tables up to date, then listens on loopback. */
  static async start(opts: { databaseUrl: string; port: number }): Promise<LocalPlc> {
    await ensureDatabase(opts.databaseUrl)
    const db = plc.Database.postgres({ url: opts.databaseUrl })
    try {
      await db.migrateToLatestOrThrow()
      const server = plc.PlcServer.create({ db, port: opts.port })
      // PlcServer.start() would listen on every interface; the network is loopback only.
      const http = server.app.listen(opts.port, '127.0.0.1')
      await listening(http)
      const port = (http.address() as { port: number }).port
      return new LocalPlc(`http://127.0.0.1:${port}`, db, tracked(http))
    } catch (err) {
      await db.close()
      throw err
    }
  }

  async stop(): Promise<void> {
    await this.close()
    await this.db.close()
  }
}

export class LocalPds {
  readonly url: string
  readonly port: number
  private readonly pds: PDS
  private readonly close: () => Promise<void>

  private constructor(url: string, port: number, pds: PDS, close: () => Promise<void>) {
    this.url = url
    this.port = port
    this.pds = pds
    this.close = close
  }

  /**
   * A PDS in dev mode (plain HTTP on localhost) whose accounts, repos and blobs are kept in
   * `dir`, and whose JWT secret, admin password and PLC rotation key are made once there
   * (0600): with another rotation key the PLC would refuse its updates to existing DIDs.
   */
  static async start(opts: { dir: string; secretsDir: string; port: number; plcUrl: string }): Promise<LocalPds> {
    const port = opts.port || (await freePort())
    const dataDirectory = join(opts.dir, 'data')
    const blobstoreDiskLocation = join(opts.dir, 'blobs')
    mkdirSync(dataDirectory, { recursive: true, mode: 0o700 })
    mkdirSync(blobstoreDiskLocation, { recursive: true, mode: 0o700 })
    const rotationKeyHex = await asyncSecret(opts.secretsDir, 'pds-plc-rotation.key', async () => {
      const key = await Secp256k1Keypair.create({ exportable: true })
      return Buffer.from(await key.export()).toString('hex')
    })
    const pds = await PDS.fromEnv({
      devMode: true,
      hostname: 'localhost',
      port,
      dataDirectory,
      blobstoreDiskLocation,
      adminPassword: secretFile(opts.secretsDir, 'pds-admin.password'),
      jwtSecret: secretFile(opts.secretsDir, 'pds-jwt.secret'),
      plcRotationKeyK256PrivateKeyHex: rotationKeyHex,
      didPlcUrl: opts.plcUrl,
      serviceHandleDomains: [HANDLE_DOMAIN],
      inviteRequired: false,
      disableSsrfProtection: true,
      serviceName: 'Atmosphere local network PDS',
      // No AppView or moderation service exists offline; these names are never reached.
      bskyAppViewUrl: 'https://appview.invalid',
      bskyAppViewDid: 'did:example:invalid',
      modServiceUrl: 'https://moderator.invalid',
      modServiceDid: 'did:example:invalid',
    })
    const url = `http://localhost:${port}`
    resolveLocalHandles(pds, `http://127.0.0.1:${port}`)
    await pds.ctx.sequencer.start()
    // PDS.start() listens on every interface; the subscription upgrade is hooked on app.listen.
    const http = pds.app.listen(port, '127.0.0.1')
    http.keepAliveTimeout = 90_000
    try {
      await listening(http)
    } catch (err) {
      await pds.ctx.destroy()
      throw err
    }
    return new LocalPds(url, port, pds, tracked(http))
  }

  /** The demo account, created on first start; its DID and password are the same at every start after. */
  async demoAccount(stateDir: string, handle: string, email: string): Promise<DemoAccount> {
    const path = join(stateDir, 'demo-account.json')
    const password = secretFile(stateDir, 'demo.password', () => `demo-${randomWords()}`)
    const known = readJson<{ did?: string; handle?: string } | null>(path, null)
    const agent = new AtpAgent({ service: `http://127.0.0.1:${this.port}` })
    if (known?.did && known.handle === handle) {
      // The state says it exists; sign in to be sure the PDS data agrees.
      await agent.login({ identifier: handle, password })
      await this.followPort(known.did)
      return { did: known.did, handle, email, password }
    }
    try {
      await agent.createAccount({ handle, email, password })
    } catch (err) {
      // Created on an earlier start whose record of it was lost: the same password signs in.
      if (!/handle already taken|already exists/i.test((err as Error).message)) throw err
      await agent.login({ identifier: handle, password })
    }
    const did = agent.session!.did
    writeJson(path, { did, handle, email })
    return { did, handle, email, password }
  }

  /**
   * The DID document names the PDS by its URL, port included: a stack restarted with another
   * port offset would leave the account pointing where nothing listens, and its sign-in at
   * the admin would fail. The PDS holds the DID's rotation key and moves it to where it is.
   */
  private async followPort(did: string): Promise<void> {
    const { plcClient, plcRotationKey } = this.pds.ctx
    const data = await plcClient.getDocumentData(did).catch((err: Error) => {
      throw new Error(
        `the demo account ${did} is in the PDS's data but not in the PLC directory (${err.message}): the state ` +
          'directory and the PLC database belong together; remove the state directory (.state/localnet) to start afresh',
      )
    })
    if (data.services.atproto_pds?.endpoint === this.url) return
    await plcClient.updatePds(did, plcRotationKey, this.url)
  }

  async stop(): Promise<void> {
    await this.close()
    await this.pds.ctx.destroy()
  }
}

/**
 * Handles under the PDS's own domain resolve by asking the PDS itself, as dev-env does: no
 * DNS anywhere answers for `.test`, and the PDS resolves handles when it signs people in.
 */
function resolveLocalHandles(pds: PDS, localUrl: string): void {
  const resolver = pds.ctx.idResolver.handle
  const original = resolver.resolve.bind(resolver)
  resolver.resolve = async (handle: string) => {
    if (!handle.endsWith(HANDLE_DOMAIN)) return original(handle)
    try {
      const res = await fetch(new URL('/.well-known/atproto-did', localUrl), { headers: { host: handle } })
      if (res.status !== 200) return undefined
      const did = (await res.text()).trim()
      return did.startsWith('did:') ? did : undefined
    } catch {
      return undefined
    }
  }
}

async function asyncSecret(dir: string, name: string, make: () => Promise<string>): Promise<string> {
  const existing = (() => {
    try {
      return secretFile(dir, name, () => {
        throw new MissingSecret()
      })
    } catch (err) {
      if (err instanceof MissingSecret) return undefined
      throw err
    }
  })()
  if (existing !== undefined) return existing
  const value = await make()
  return secretFile(dir, name, () => value)
}

class MissingSecret extends Error {}

/** Three short words: a password a newcomer can type from the summary. */
function randomWords(): string {
  const words = ['amber', 'birch', 'cedar', 'delta', 'ember', 'fjord', 'grove', 'heron', 'indigo', 'juniper']
  const bytes = new Uint8Array(8)
  crypto.getRandomValues(bytes)
  const pick = (i: number) => words[bytes[i]! % words.length]
  const digits = ((bytes[6]! << 8) | bytes[7]!).toString().padStart(5, '0')
  return `${pick(0)}-${pick(1)}-${pick(2)}-${pick(3)}-${digits}`
}
