import { join } from 'node:path'
import { createPool } from '@atmos/db'
import { activePoolKey } from '@atmos/dkim'
import { type DnsRecords, type DnsZone, TestDnsServer } from '@atmos/testkit'
import { type DemoAccount, LocalPds, LocalPlc } from './identity.ts'
import { complaint, deliveryStatus, type ReportKey, reportKey, sendReport, sign } from './reports.ts'
import { type NetworkPorts, SINK_DOMAIN, SINK_HOST, SINK_PROVIDER } from './settings.ts'
import { Sink } from './sink.ts'
import { readJson, writeJson } from './state.ts'
import { startWeb, type WebServer } from './web.ts'
import { addToZone, formatRecord, LIMITS, type PublishedRecord, sameRecord, ZoneLineError } from './zone.ts'

export type { NetworkPorts }
export { SINK_DOMAIN, SINK_HOST, SINK_PROVIDER }

export type LocalNetworkOptions = {
  /** Where everything that must outlive a restart is kept (secrets 0600). */
  stateDir: string
  /** The PLC directory's own database (created when missing). */
  plcDatabaseUrl: string
  /** The services' database: the pool's DKIM public key is read from it for the pool's zone. */
  databaseUrl: string
  pool: { domain: string; bounceDomain: string }
  /** fbl-ingest's inbound listener, where the sink's complaints and late bounces go. */
  inbound: { host: string; port: number }
  /** 0: any free port. */
  ports?: Partial<NetworkPorts>
  demo?: { handle?: string; email?: string; domain?: string }
}

export const DEMO_DEFAULTS = {
  handle: 'atmos-demo.test',
  email: 'atmos-demo@demo-mail.example',
  domain: 'demo-mail.example',
}

/** What the network offers, as the stack passes it to the services and prints it. */
export type NetworkInfo = {
  plcUrl: string
  pdsUrl: string
  dns: { host: string; port: number }
  sink: { host: string; port: number; hostname: string }
  webUrl: string
  demo: DemoAccount & { domain: string }
  provider: typeof SINK_PROVIDER
}

type Published = { records: PublishedRecord[] }

/**
 * A PLC directory, a PDS with a demo account, an authoritative DNS server, a sink MX for
 * every domain and the pages that show and steer them, all on loopback.
 */
export class LocalNetwork {
  readonly opts: LocalNetworkOptions
  plc: LocalPlc | undefined
  pds: LocalPds | undefined
  dns: TestDnsServer | undefined
  sink: Sink | undefined
  web: WebServer | undefined
  demo: (DemoAccount & { domain: string }) | undefined
  private builtIn: DnsZone = {}
  private published: PublishedRecord[] = []
  private key: ReportKey | undefined

  constructor(opts: LocalNetworkOptions) {
    this.opts = opts
  }

  private get secretsDir() {
    return join(this.opts.stateDir, 'secrets')
  }

  private get dnsFile() {
    return join(this.opts.stateDir, 'dns.json')
  }

  async start(): Promise<NetworkInfo> {
    const ports = { plc: 0, pds: 0, dns: 0, sink: 0, web: 0, ...this.opts.ports }
    const demo = { ...DEMO_DEFAULTS, ...this.opts.demo }
    try {
      this.key = reportKey(this.secretsDir, SINK_DOMAIN)
      this.published = readJson<Published>(this.dnsFile, { records: [] }).records
      this.builtIn = await this.poolZone()
      this.dns = new TestDnsServer()
      this.dns.recordQueries = false
      // `*._report._dmarc.<pool>`: the pool agrees to take every domain's DMARC aggregate
      // reports (RFC 7489 §7.1), so receivers send them to the `rua=` the wizard proposes.
      const reportAuthorization = `._report._dmarc.${this.opts.pool.domain.toLowerCase()}`
      // Every other name is a recipient domain whose mail the sink takes.
      this.dns.fallback = (name): DnsRecords =>
        name.endsWith(reportAuthorization) ? { TXT: ['v=DMARC1'] } : { MX: [{ priority: 10, exchange: SINK_HOST }] }
      this.rebuildZone()
      await this.dns.start(ports.dns)

      this.sink = new Sink({ dir: join(this.opts.stateDir, 'sink'), dnsAddress: this.dns.address, hostname: SINK_HOST })
      await this.sink.start(ports.sink)

      this.plc = await LocalPlc.start({ databaseUrl: this.opts.plcDatabaseUrl, port: ports.plc })
      this.pds = await LocalPds.start({
        dir: join(this.opts.stateDir, 'pds'),
        secretsDir: this.secretsDir,
        port: ports.pds,
        plcUrl: this.plc.url,
      })
      const account = await this.pds.demoAccount(this.opts.stateDir, demo.handle, demo.email)
      this.demo = { ...account, domain: demo.domain }

      this.web = await startWeb(this, ports.web)
      return this.info()
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  info(): NetworkInfo {
    if (!this.plc || !this.pds || !this.dns || !this.sink || !this.web || !this.demo)
      throw new Error('the local network is not started')
    return {
      plcUrl: this.plc.url,
      pdsUrl: this.pds.url,
      dns: { host: '127.0.0.1', port: this.dns.port },
      sink: { host: '127.0.0.1', port: this.sink.port, hostname: SINK_HOST },
      webUrl: this.web.url,
      demo: this.demo,
      provider: SINK_PROVIDER,
    }
  }

  async stop(): Promise<void> {
    const { web, pds, plc, sink, dns } = this
    this.web = this.pds = this.plc = this.sink = this.dns = undefined
    const steps = [() => web?.close(), () => pds?.stop(), () => plc?.stop(), () => sink?.stop(), () => dns?.close()]
    const errors: unknown[] = []
    for (const step of steps)
      await Promise.resolve()
        .then(step)
        .catch((err) => errors.push(err))
    if (errors.length) throw errors[0]
  }

  /** The records published through the page or the CLI (not the network's own). */
  records(): PublishedRecord[] {
    return [...this.published]
  }

  /** The network's own records (pool, sink), listed read-only. */
  builtInLines(): string[] {
    const lines: string[] = []
    for (const [name, r] of Object.entries(this.builtIn)) {
      for (const t of r.TXT ?? []) lines.push(formatRecord({ name, type: 'TXT', strings: [t].flat() }))
      for (const m of r.MX ?? []) lines.push(formatRecord({ name, type: 'MX', ...m }))
      for (const a of r.A ?? []) lines.push(formatRecord({ name, type: 'A', address: a }))
    }
    return lines
  }

  /** Adds records (a record already there is not doubled); returns how many were new. */
  publish(records: PublishedRecord[]): number {
    const fresh = records.filter(
      (r, i) => !this.published.some((p) => sameRecord(p, r)) && records.findIndex((o) => sameRecord(o, r)) === i,
    )
    if (this.published.length + fresh.length > LIMITS.records)
      throw new ZoneLineError(`the zone holds ${LIMITS.records} published records at most; remove some first`)
    this.published.push(...fresh)
    this.save()
    return fresh.length
  }

  /** Removes the published records of `name` (of `type` only, or the one exact `line`); returns how many. */
  remove(match: { name: string; type?: string; record?: PublishedRecord }): number {
    const name = match.name.toLowerCase().replace(/\.$/, '')
    const before = this.published.length
    this.published = this.published.filter((r) => {
      if (match.record) return !sameRecord(r, match.record)
      return !(r.name === name && (!match.type || r.type === match.type.toUpperCase()))
    })
    this.save()
    return before - this.published.length
  }

  /** Sends an abuse report about a kept message to the pool's feedback mailbox. */
  async complain(id: string): Promise<string> {
    const { entry, raw } = this.kept(id)
    const to = `fbl@${this.opts.pool.domain}`
    const report = await sign(complaint(entry, raw, { reporterDomain: SINK_DOMAIN, to }), this.key!)
    const reply = await sendReport(this.opts.inbound, { from: `feedback@${SINK_DOMAIN}`, to }, report, SINK_HOST)
    this.sink!.noteFeedback(id, { kind: 'complaint', at: new Date().toISOString(), to, reply })
    return reply
  }

  /** Sends a late bounce (DSN) of a kept message to its return path, as the recipient's MTA would. */
  async bounce(id: string): Promise<string> {
    const { entry, raw } = this.kept(id)
    if (!entry.mailFrom) throw new ZoneLineError('the message had a null sender: a bounce has nowhere to go')
    const report = await sign(deliveryStatus(entry, raw, { reporterDomain: SINK_DOMAIN }), this.key!)
    const reply = await sendReport(this.opts.inbound, { from: '', to: entry.mailFrom }, report, SINK_HOST)
    this.sink!.noteFeedback(id, { kind: 'bounce', at: new Date().toISOString(), to: entry.mailFrom, reply })
    return reply
  }

  private kept(id: string) {
    const entry = this.sink?.get(id)
    const raw = this.sink?.raw(id)
    if (!entry || !raw) throw new NotFound(`no kept message ${JSON.stringify(id)}`)
    return { entry, raw }
  }

  private save() {
    writeJson(this.dnsFile, { records: this.published } satisfies Published)
    this.rebuildZone()
  }

  private rebuildZone() {
    if (!this.dns) return
    const zone: DnsZone = structuredClone(this.builtIn)
    this.dns.zone = addToZone(zone, this.published)
  }

  /**
   * The pool's zone as a receiver must see it (its SPF include allowing loopback, its DKIM key
   * from the database, which `relay keys init` filled, its bounce and feedback MX) and the
   * sink's (its host, and the key and SPF its reports authenticate with).
   */
  private async poolZone(): Promise<DnsZone> {
    const { domain, bounceDomain } = this.opts.pool
    const sql = createPool({ url: this.opts.databaseUrl, poolMax: 1 })
    let key: { selector: string; publicKey: string } | null
    try {
      key = await activePoolKey(sql, domain)
    } finally {
      await sql.end({ timeout: 5 })
    }
    const spf = `v=spf1 include:_spf.${domain} -all`
    const mx = [{ priority: 10, exchange: `mx.${domain}` }]
    const zone: DnsZone = {
      [`_spf.${domain}`]: { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
      [domain]: { TXT: [spf], MX: mx },
      [bounceDomain]: { TXT: [spf], MX: mx },
      [`mx.${domain}`]: { A: ['127.0.0.1'] },
      [`_dmarc.${domain}`]: { TXT: ['v=DMARC1; p=none'] },
      [SINK_DOMAIN]: { TXT: ['v=spf1 ip4:127.0.0.1 -all'], MX: [{ priority: 10, exchange: SINK_HOST }] },
      [SINK_HOST]: { A: ['127.0.0.1'] },
      [`_dmarc.${SINK_DOMAIN}`]: { TXT: ['v=DMARC1; p=none'] },
      [`${this.key!.selector}._domainkey.${SINK_DOMAIN}`]: { TXT: [chunks(this.key!.publicKeyTxt)] },
    }
    if (key) zone[`${key.selector}._domainkey.${domain}`] = { TXT: [chunks(`v=DKIM1; k=rsa; p=${key.publicKey}`)] }
    return zone
  }
}

/** A request named something that is not there (404 on the pages and the API). */
export class NotFound extends Error {
  override name = 'NotFound'
}

/** A TXT value cut into 255-byte character-strings, as a zone file holds a long key. */
function chunks(value: string): string[] {
  const out: string[] = []
  for (let i = 0; i < value.length; i += 255) out.push(value.slice(i, i + 255))
  return out
}
