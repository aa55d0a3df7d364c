import { randomInt } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { connect, isIP } from 'node:net'
import { Packet } from 'dns2'
import type { MxRecord } from './resolver.ts'

/**
 * DNS questions whose answer must say whether the resolver validated it (the AD bit).
 * node:dns (c-ares) hides the header, so these go out over our own UDP socket (TCP when
 * the answer is truncated), with AD and EDNS DO set as Postfix does with
 * `smtp_dns_support_level = dnssec`. The AD bit means something only when the resolver
 * is a validating one on a trusted path (loopback, or a link the operator controls):
 * whoever configures these servers vouches for that.
 */

/** A TLSA record (RFC 6698): certificate usage, selector, matching type, association data. */
export type TlsaRecord = { usage: number; selector: number; matchingType: number; data: Buffer }

/** Records of one name and type, and whether the resolver authenticated them (or their absence). */
export type SecureAnswer<T> = { records: T[]; authenticated: boolean }

export interface SecureDnsResolver {
  /** An absent name or type is an empty answer (authenticated when the denial was). */
  resolveTlsa(name: string): Promise<SecureAnswer<TlsaRecord>>
  resolveMx(name: string): Promise<SecureAnswer<MxRecord>>
}

export type SecureDnsResolverOptions = {
  servers: string[]
  port?: number
  timeoutMs?: number
  tries?: number
}

const TYPE_TLSA = 52
const TYPE_MX = 15
const RCODE_NXDOMAIN = 3
/** Bound on a TCP answer: larger is not a TLSA or MX RRset anyone publishes. */
const MAX_TCP_ANSWER = 65_535

type Server = { host: string; port: number }

type Header = Packet['header'] & { ad?: number; cd?: number }

export function createSecureDnsResolver(opts: SecureDnsResolverOptions): SecureDnsResolver {
  if (opts.servers.length === 0) throw new Error('createSecureDnsResolver needs at least one server')
  const servers = opts.servers.map((s) => parseServer(s, opts.port ?? 53))
  const timeoutMs = opts.timeoutMs ?? 2000
  const tries = opts.tries ?? 2
  const ask = (name: string, type: number) => query(servers, name, type, timeoutMs, tries)
  return {
    async resolveTlsa(name) {
      const { packet, authenticated } = await ask(name, TYPE_TLSA)
      const records = packet.answers.flatMap((r) => {
        const data = r.type === TYPE_TLSA && Buffer.isBuffer(r.data) ? r.data : undefined
        if (!data || data.length < 4) return []
        return [{ usage: data[0] ?? 0, selector: data[1] ?? 0, matchingType: data[2] ?? 0, data: data.subarray(3) }]
      })
      return { records, authenticated }
    },
    async resolveMx(name) {
      const { packet, authenticated } = await ask(name, TYPE_MX)
      const records = packet.answers.flatMap((r) =>
        r.type === TYPE_MX ? [{ exchange: (r.exchange ?? '').replace(/\.$/, ''), priority: r.priority ?? 0 }] : [],
      )
      return { records, authenticated }
    },
  }
}

async function query(
  servers: Server[],
  name: string,
  type: number,
  timeoutMs: number,
  tries: number,
): Promise<{ packet: Packet; authenticated: boolean }> {
  let last: unknown
  for (let attempt = 0; attempt < tries; attempt++) {
    for (const server of servers) {
      try {
        const packet = await exchange(server, name, type, timeoutMs)
        const header = packet.header as Header
        if (header.rcode !== 0 && header.rcode !== RCODE_NXDOMAIN) {
          throw Object.assign(new Error(`query ${name}: rcode ${header.rcode}`), {
            code: header.rcode === 2 ? 'ESERVFAIL' : header.rcode === 5 ? 'EREFUSED' : 'EBADRESP',
          })
        }
        return { packet, authenticated: header.ad === 1 }
      } catch (err) {
        last = err
      }
    }
  }
  throw last
}

function request(id: number, name: string, type: number): Buffer {
  const q = new Packet()
  const header = q.header as Header
  header.id = id
  header.rd = 1
  header.ad = 1
  q.questions.push({ name, type, class: Packet.CLASS.IN } as Packet['questions'][number])
  q.additionals.push(Packet.Resource.EDNS([], { doFlag: true, udpPayloadSize: 1232 }))
  return q.toBuffer()
}

function matches(packet: Packet, id: number, name: string, type: number): boolean {
  const question = packet.questions[0]
  return (
    packet.header.id === id &&
    packet.header.qr === 1 &&
    question !== undefined &&
    question.type === type &&
    question.name.toLowerCase().replace(/\.$/, '') === name.toLowerCase().replace(/\.$/, '')
  )
}

/** One question over UDP, retried over TCP when truncated. */
function exchange(server: Server, name: string, type: number, timeoutMs: number): Promise<Packet> {
  const id = randomInt(65_536)
  const message = request(id, name, type)
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4')
    const timer = setTimeout(() => done(timeout(name)), timeoutMs)
    let settled = false
    const done = (err: Error | undefined, packet?: Packet) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.close()
      if (err) reject(err)
      else if (packet) resolve(packet)
    }
    socket.on('error', (err) => done(err))
    socket.on('message', (data, rinfo) => {
      if (rinfo.port !== server.port) return
      let packet: Packet
      try {
        packet = Packet.parse(data)
      } catch {
        return
      }
      if (!matches(packet, id, name, type)) return
      if (packet.header.tc) {
        settled = true
        clearTimeout(timer)
        socket.close()
        exchangeTcp(server, message, id, name, type, timeoutMs).then(resolve, reject)
        return
      }
      done(undefined, packet)
    })
    socket.send(message, server.port, server.host, (err) => {
      if (err) done(err)
    })
  })
}

function exchangeTcp(
  server: Server,
  message: Buffer,
  id: number,
  name: string,
  type: number,
  timeoutMs: number,
): Promise<Packet> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: server.host, port: server.port })
    const timer = setTimeout(() => fail(timeout(name)), timeoutMs)
    let buffered = Buffer.alloc(0)
    const fail = (err: Error) => {
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    socket.on('error', fail)
    socket.on('connect', () => {
      const length = Buffer.alloc(2)
      length.writeUInt16BE(message.length)
      socket.write(Buffer.concat([length, message]))
    })
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.length > MAX_TCP_ANSWER + 2) return fail(new Error(`query ${name}: answer too long`))
      if (buffered.length < 2) return
      const length = buffered.readUInt16BE(0)
      if (buffered.length < length + 2) return
      clearTimeout(timer)
      socket.destroy()
      try {
        const packet = Packet.parse(buffered.subarray(2, length + 2))
        if (!matches(packet, id, name, type)) throw new Error(`query ${name}: answer to another question`)
        resolve(packet)
      } catch (err) {
        reject(Object.assign(err as Error, { code: 'EBADRESP' }))
      }
    })
    socket.on('end', () => fail(Object.assign(new Error(`query ${name}: connection closed`), { code: 'EBADRESP' })))
  })
}

function timeout(name: string): Error {
  return Object.assign(new Error(`query ${name}: timed out`), { code: 'ETIMEOUT' })
}

function parseServer(server: string, port: number): Server {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(server)
  if (bracketed) return { host: bracketed[1] ?? '', port: bracketed[2] ? Number(bracketed[2]) : port }
  if (isIP(server) === 6) return { host: server, port }
  const [host = '', p] = server.split(':')
  return { host, port: p ? Number(p) : port }
}
