import type { Socket } from 'node:net'
import { createTCPServer, createUDPServer, Packet, type Resource, type TCPServer, type UDPServer } from 'dns2'

/**
 * An authoritative DNS server on loopback for tests that must not reach the internet.
 * The zone is plain data read on every query, so a test can change records or make a
 * name misbehave at any moment (e.g. degrade DNS between two verification runs).
 * UDP and TCP listen on the same port because resolvers (c-ares included) retry a
 * truncated UDP answer over TCP on the server's one port.
 */

export type DnsRecordType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'CNAME' | 'TLSA' | 'PTR'

/**
 * How a name misbehaves instead of answering: an error rcode, silence, or a response
 * that cannot be parsed (right id and question, then a record that runs off the end).
 */
export type DnsBehaviour = 'servfail' | 'refused' | 'timeout' | 'garbage'

export type DnsRecords = {
  A?: string[]
  AAAA?: string[]
  /** `{ priority: 0, exchange: '.' }` is the null MX of RFC 7505. */
  MX?: { priority: number; exchange: string }[]
  /** Each record is one string or its list of character-strings (an SPF record split across several). */
  TXT?: (string | string[])[]
  /** Reverse names, at `4.3.2.1.in-addr.arpa` (see `reverseName`). */
  PTR?: string[]
  /** Followed within the zone: the answer carries the CNAME and then the target's records. */
  CNAME?: string
  /** DANE records (RFC 6698), at names such as `_25._tcp.mx.example`; `data` is the association, hex. */
  TLSA?: { usage: number; selector: number; matchingType: number; data: string }[]
  /**
   * Answers about this name carry the AD bit, as a validating resolver sets it for data
   * it authenticated with DNSSEC. (This server signs nothing: it plays the validating
   * resolver the relay trusts, not an authoritative server.)
   */
  secure?: boolean
  /** For every query of this name, or only for the listed types. */
  behaviour?: DnsBehaviour | Partial<Record<DnsRecordType, DnsBehaviour>>
}

/** Names are matched case-insensitively, with or without a trailing dot. */
export type DnsZone = Record<string, DnsRecords>

export type DnsQuery = { name: string; type: string; transport: 'udp' | 'tcp' }

const TYPE_CODES: Record<DnsRecordType, number> = {
  A: Packet.TYPE.A,
  AAAA: Packet.TYPE.AAAA,
  MX: Packet.TYPE.MX,
  TXT: Packet.TYPE.TXT,
  CNAME: Packet.TYPE.CNAME,
  TLSA: 52,
  PTR: Packet.TYPE.PTR,
}
const TYPE_NAMES = new Map(Object.entries(TYPE_CODES).map(([name, code]) => [code, name as DnsRecordType]))
// Long enough for any delegation a test builds, short enough to stop a CNAME loop.
const MAX_CNAME_HOPS = 8

/** The name a PTR record of an IPv4 address lives at: `192.0.2.1` → `1.2.0.192.in-addr.arpa`. */
export function reverseName(ipv4: string): string {
  return `${ipv4.split('.').reverse().join('.')}.in-addr.arpa`
}

const normalize = (name: string) => name.toLowerCase().replace(/\.$/, '')

export class TestDnsServer {
  /** Replace or mutate freely; every query reads it afresh. */
  zone: DnsZone
  /** Every question received, in order: lets a test assert that nothing was asked. */
  readonly queries: DnsQuery[] = []
  /**
   * Records of a name the zone does not hold (a wildcard of sorts: the local network sends
   * every recipient domain to its sink); undefined answers NXDOMAIN as before.
   */
  fallback: ((name: string) => DnsRecords | undefined) | undefined
  /** False stops keeping `queries` (a long-running server would grow it without end). */
  recordQueries = true
  private udp: UDPServer | undefined
  private tcp: TCPServer | undefined
  private readonly sockets = new Set<Socket>()
  private boundPort = 0

  constructor(zone: DnsZone = {}) {
    this.zone = zone
  }

  get port(): number {
    if (!this.boundPort) throw new Error('TestDnsServer is not started')
    return this.boundPort
  }

  /** `127.0.0.1:<port>`, the form `dns.Resolver#setServers` takes. */
  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  /** Sets (or with `undefined` removes) one name's records. */
  set(name: string, records: DnsRecords | undefined): this {
    for (const key of Object.keys(this.zone)) if (normalize(key) === normalize(name)) delete this.zone[key]
    if (records) this.zone[normalize(name)] = records
    return this
  }

  /**
   * Makes a name misbehave (for every type, or only the given ones); `undefined` restores it.
   * A name that was absent exists from then on, without records (NODATA, not NXDOMAIN).
   */
  behave(name: string, behaviour: DnsRecords['behaviour']): this {
    const records = this.lookup(name) ?? {}
    return this.set(name, { ...records, behaviour })
  }

  /** Listens on 127.0.0.1, on a random port unless one is given; resolves to the port. */
  async start(port = 0): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const udp = createUDPServer((req, send) => this.answer(req, send, 'udp'))
      await udp.listen(port, '127.0.0.1')
      const bound = udp.address().port
      const tcp = createTCPServer((req, send) => this.answer(req, send, 'tcp'))
      tcp.on('connection', (socket: Socket) => {
        this.sockets.add(socket)
        socket.on('close', () => this.sockets.delete(socket))
      })
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject)
          tcp.listen(bound, '127.0.0.1', () => resolve())
        })
      } catch (err) {
        // The random UDP port may be taken on TCP; pick another pair.
        udp.close()
        if (port !== 0 || attempt >= 20) throw err
        continue
      }
      this.udp = udp
      this.tcp = tcp
      this.boundPort = bound
      return bound
    }
  }

  async close(): Promise<void> {
    const { udp, tcp } = this
    this.udp = undefined
    this.tcp = undefined
    // Resolvers keep TCP connections open; without this close() waits for their idle timeout.
    for (const socket of this.sockets) socket.destroy()
    await Promise.all([
      udp && new Promise<void>((resolve) => udp.close(() => resolve())),
      tcp && new Promise<void>((resolve) => tcp.close(() => resolve())),
    ])
  }

  private lookup(name: string): DnsRecords | undefined {
    const wanted = normalize(name)
    for (const [key, records] of Object.entries(this.zone)) if (normalize(key) === wanted) return records
    return this.fallback?.(wanted)
  }

  private behaviourOf(records: DnsRecords | undefined, type: DnsRecordType | undefined): DnsBehaviour | undefined {
    const behaviour = records?.behaviour
    if (typeof behaviour === 'string' || behaviour === undefined) return behaviour
    return type ? behaviour[type] : undefined
  }

  private answer(request: Packet, send: Send, transport: 'udp' | 'tcp') {
    const question = request.questions[0]
    const response = Packet.createResponseFromRequest(request)
    response.header.aa = 1
    if (!question) {
      response.header.rcode = Packet.RCODE.FORMERR
      reply(send, response)
      return
    }
    const type = TYPE_NAMES.get(question.type)
    if (this.recordQueries)
      this.queries.push({ name: question.name, type: type ?? Packet.typeName(question.type), transport })

    const records = this.lookup(question.name)
    const behaviour = this.behaviourOf(records, type)
    if (behaviour === 'timeout') return
    if (behaviour === 'garbage') {
      reply(send, garbage(response))
      return
    }
    if (behaviour === 'servfail' || behaviour === 'refused') {
      response.header.rcode = behaviour === 'servfail' ? Packet.RCODE.SERVFAIL : Packet.RCODE.REFUSED
      reply(send, response)
      return
    }

    if (!records) {
      response.header.rcode = Packet.RCODE.NXDOMAIN
    } else {
      response.answers = this.resolve(question.name, records, type)
      if (records.secure) (response.header as { ad?: number }).ad = 1
    }
    reply(send, response)
  }

  /** The records of one name and type, following CNAMEs within the zone (NODATA is an empty list). */
  private resolve(name: string, records: DnsRecords, type: DnsRecordType | undefined): Resource[] {
    const answers: Resource[] = []
    let owner = name
    let current: DnsRecords | undefined = records
    for (let hop = 0; current && hop <= MAX_CNAME_HOPS; hop++) {
      if (current.CNAME && type !== 'CNAME') {
        answers.push(resource(owner, 'CNAME', { domain: current.CNAME }))
        owner = current.CNAME
        current = this.lookup(owner)
        continue
      }
      if (type) answers.push(...recordsOf(owner, current, type))
      break
    }
    return answers
  }
}

type Send = (response: Packet | Buffer) => Promise<Buffer> | undefined

/**
 * dns2's UDP send returns a promise, its TCP send returns nothing; either may fail once
 * the client is gone, which is no concern of the test. (A throw here would make dns2
 * drop the TCP connection, and with it every query pipelined on it.)
 */
function reply(send: Send, response: Packet | Buffer): void {
  try {
    void Promise.resolve(send(response)).catch(() => {})
  } catch {
    // the client went away
  }
}

function resource(name: string, type: DnsRecordType, data: Partial<Resource>): Resource {
  // TTL 0: the resolver under test must not cache, or a test could not change DNS mid-way.
  return { name, type: TYPE_CODES[type], class: Packet.CLASS.IN, ttl: 0, ...data } as Resource
}

function recordsOf(name: string, records: DnsRecords, type: DnsRecordType): Resource[] {
  switch (type) {
    case 'A':
    case 'AAAA':
      return (records[type] ?? []).map((address) => resource(name, type, { address }))
    case 'MX':
      return (records.MX ?? []).map((mx) => resource(name, 'MX', { priority: mx.priority, exchange: mx.exchange }))
    case 'TXT':
      return (records.TXT ?? []).map((txt) =>
        resource(name, 'TXT', { data: characterStrings(txt) as unknown as string[] }),
      )
    case 'CNAME':
      return records.CNAME ? [resource(name, 'CNAME', { domain: records.CNAME })] : []
    case 'PTR':
      return (records.PTR ?? []).map((domain) => resource(name, 'PTR', { domain }))
    case 'TLSA':
      // dns2 has no TLSA codec: it writes the raw RDATA it finds in `data`.
      return (records.TLSA ?? []).map((t) =>
        resource(name, 'TLSA', {
          data: Buffer.concat([Buffer.from([t.usage, t.selector, t.matchingType]), Buffer.from(t.data, 'hex')]),
        }),
      )
  }
}

/**
 * A character-string holds at most 255 octets (RFC 1035 3.3), so a longer one (a 2048-bit
 * DKIM key) is cut into several, as zone-file tools do; readers join them back.
 */
function characterStrings(txt: string | string[]): Buffer[] {
  return (Array.isArray(txt) ? txt : [txt]).flatMap((s) => {
    const bytes = Buffer.from(s, 'utf8')
    const chunks = [bytes.subarray(0, 255)]
    for (let i = 255; i < bytes.length; i += 255) chunks.push(bytes.subarray(i, i + 255))
    return chunks
  })
}

/**
 * A response whose header promises one answer that is cut off after its name: the id
 * and question match, so the client accepts it as the reply and then fails to parse it.
 */
function garbage(response: Packet): Buffer {
  const header = Buffer.from(response.toBuffer())
  header.writeUInt16BE(1, 6)
  return Buffer.concat([header, Buffer.from([0xc0, 0x0c, 0x00, 0x10, 0x00])])
}
