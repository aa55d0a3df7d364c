import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { inboundMessages } from '@atmos/db'
import type { FblIngestService } from '../src/service.ts'
import { type Harness, harness, POOL_DOMAIN, sendRaw, startService } from './helpers.ts'

// Port 25 is open to anyone: no address may hold the listener with connections it trickles
// bytes into, and every connection must name one of our mailboxes soon and finish in time.

/** A raw connection from a loopback address of our choice; `reply` waits for the next complete reply. */
class Peer {
  readonly socket: Socket
  readonly closed: Promise<void>
  private text = ''
  private read = 0

  constructor(port: number, localAddress = '127.0.0.1') {
    this.socket = connect({ port, host: '127.0.0.1', localAddress })
    this.socket.setEncoding('utf8')
    this.socket.on('data', (chunk: string) => {
      this.text += chunk
    })
    this.socket.on('error', () => {})
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()))
  }

  get received(): string {
    return this.text
  }

  async reply(): Promise<string> {
    const deadline = Date.now() + 10_000
    for (;;) {
      const m = /(?:^|\n)(\d{3}) ([^\r\n]*)\r?\n/.exec(this.text.slice(this.read))
      if (m) {
        this.read += m.index + m[0].length
        return `${m[1]} ${m[2]}`
      }
      if (Date.now() > deadline || this.socket.destroyed) throw new Error(`no reply in ${JSON.stringify(this.text)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  async send(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`)
    return this.reply()
  }
}

async function until<T>(check: () => T | undefined | Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const bounce = 'From: MAILER-DAEMON@remote.example\r\nTo: postmaster\r\nSubject: limits\r\n\r\nbody\r\n'

describe('inbound SMTP, default limits', () => {
  let h: Harness
  let service: FblIngestService
  let port: number

  before(async () => {
    h = await harness('fbl-limits')
    service = await startService({ ...h.env, ATMOS_FBL_INGEST_ROLES: 'smtp' })
    port = service.ctx.listener!.address!.port
  })
  after(async () => {
    await service?.destroy()
    await h?.close()
  })

  it('1,000 trickling connections from one address: it keeps 10, every other address is served at once', async () => {
    const attackers: Peer[] = []
    // In batches, so that the listen backlog never overflows into SYN retries.
    for (let i = 0; i < 5; i++) {
      const batch = Array.from({ length: 200 }, () => new Peer(port, '127.0.0.2'))
      await Promise.all(batch.map((p) => new Promise((r) => p.socket.once('connect', r).once('close', r))))
      attackers.push(...batch)
    }
    const trickle = setInterval(() => {
      for (const a of attackers) if (!a.socket.destroyed) a.socket.write('N')
    }, 200)
    try {
      await until(() => (attackers.every((a) => a.received.length > 0) ? true : undefined), 'every attacker answered')
      const held = attackers.filter((a) => a.received.startsWith('220 '))
      const refused = attackers.filter((a) => a.received.startsWith('421 '))
      assert.equal(held.length, 10)
      assert.equal(refused.length, 990)
      assert.equal(refused[0]!.received, '421 4.7.0 Too many connections from 127.0.0.2; try again later\r\n')
      await Promise.all(refused.map((a) => a.closed))
      assert.equal(service.ctx.listener!.connectionsFrom('127.0.0.2'), 10)

      // A bounce from another address, while the ten stay.
      assert.match(await sendRaw(port, '', [`postmaster@${POOL_DOMAIN}`], bounce), /^250 /)
      assert.ok(held.every((a) => !a.socket.destroyed))
    } finally {
      clearInterval(trickle)
      for (const a of attackers) a.socket.destroy()
    }
    const metrics = await service.ctx.metrics.getSingleMetricAsString('atmos_fbl_smtp_refused_total')
    assert.match(metrics, /reason="address_connections"[^}]*\} 990/)
  })

  it('takes reports up to 2 MB: EHLO says so, a larger declared SIZE gets 552 5.3.4', async () => {
    const peer = new Peer(port, '127.0.0.3')
    try {
      await peer.reply()
      assert.equal(await peer.send('EHLO c.example'), '250 SIZE 2097152')
      assert.match(await peer.send('MAIL FROM:<> SIZE=2097153'), /^552 5\.3\.4 /)
      assert.match(await peer.send('MAIL FROM:<> SIZE=2097152'), /^250 /)
    } finally {
      peer.socket.destroy()
    }
  })
})

describe('inbound SMTP, deadlines', () => {
  let h: Harness

  before(async () => {
    h = await harness('fbl-deadlines')
  })
  after(async () => {
    await h?.close()
  })

  /** A listener with one limit made short, so that no other step of a test races it. */
  async function withListener(extra: Record<string, string>, fn: (port: number) => Promise<void>): Promise<void> {
    const service = await startService({ ...h.env, ATMOS_FBL_INGEST_ROLES: 'smtp', ...extra })
    try {
      await fn(service.ctx.listener!.address!.port)
    } finally {
      await service.destroy()
    }
  }

  it('closes a connection that names none of our mailboxes by the deadline, however it trickles', () =>
    withListener({ ATMOS_FBL_INGEST_SMTP_RECIPIENT_TIMEOUT: '1s' }, async (port) => {
      const peer = new Peer(port)
      try {
        assert.match(await peer.reply(), /^220 /)
        assert.match(await peer.send('EHLO c.example'), /^250 /)
        assert.match(await peer.send('MAIL FROM:<>'), /^250 /)
        assert.match(await peer.send('RCPT TO:<someone@elsewhere.example>'), /^550 5\.7\.1 /)
        const trickle = setInterval(() => peer.socket.write('N'), 100)
        try {
          assert.equal(await peer.reply(), '421 4.7.0 No accepted recipient within 1 second; closing')
          await peer.closed
        } finally {
          clearInterval(trickle)
        }
      } finally {
        peer.socket.destroy()
      }
    }))

  it('closes a message trickled slower than the minimum data rate, and stores nothing', () =>
    withListener(
      { ATMOS_FBL_INGEST_SMTP_MIN_DATA_RATE: '2000', ATMOS_FBL_INGEST_SMTP_DATA_RATE_WINDOW: '500ms' },
      async (port) => {
        const stored = async () => (await h.db.select().from(inboundMessages)).length
        const before = await stored()
        const peer = new Peer(port)
        try {
          await peer.reply()
          await peer.send('EHLO c.example')
          await peer.send('MAIL FROM:<>')
          assert.match(await peer.send(`RCPT TO:<postmaster@${POOL_DOMAIN}>`), /^250 /)
          assert.match(await peer.send('DATA'), /^354 /)
          const trickle = setInterval(() => peer.socket.write('x\r\n'), 100)
          try {
            assert.equal(await peer.reply(), '421 4.7.0 Message data slower than 2000 bytes a second; closing')
          } finally {
            clearInterval(trickle)
          }
        } finally {
          peer.socket.destroy()
        }
        assert.equal(await stored(), before)
        // A sender that keeps up is not touched.
        assert.match(await sendRaw(port, '', [`postmaster@${POOL_DOMAIN}`], bounce), /^250 /)
      },
    ))

  it('defers an address past its message rate with 450 4.7.1 at MAIL FROM, stores nothing more, and serves others', () =>
    withListener(
      { ATMOS_FBL_INGEST_SMTP_MAX_MESSAGES_PER_ADDRESS: '2', ATMOS_FBL_INGEST_SMTP_MESSAGE_RATE_WINDOW: '1h' },
      async (port) => {
        const stored = async () => (await h.db.select().from(inboundMessages)).length
        assert.match(await sendRaw(port, '', [`postmaster@${POOL_DOMAIN}`], bounce), /^250 /)
        assert.match(await sendRaw(port, '', [`postmaster@${POOL_DOMAIN}`], bounce), /^250 /)
        const before = await stored()
        const peer = new Peer(port)
        try {
          await peer.reply()
          await peer.send('EHLO c.example')
          assert.match(
            await peer.send('MAIL FROM:<>'),
            /^450 4\.7\.1 Too many messages from 127\.0\.0\.1: at most 2 in 60 minutes; try again in /,
          )
        } finally {
          peer.socket.destroy()
        }
        assert.equal(await stored(), before)
        const other = new Peer(port, '127.0.0.4')
        try {
          await other.reply()
          await other.send('EHLO c.example')
          assert.match(await other.send('MAIL FROM:<>'), /^250 /)
        } finally {
          other.socket.destroy()
        }
      },
    ))

  it('ends a session at its maximum length, however busy', () =>
    withListener({ ATMOS_FBL_INGEST_SMTP_MAX_SESSION_LENGTH: '3s' }, async (port) => {
      const peer = new Peer(port)
      try {
        await peer.reply()
        await peer.send('EHLO c.example')
        await peer.send('MAIL FROM:<>')
        assert.match(await peer.send(`RCPT TO:<postmaster@${POOL_DOMAIN}>`), /^250 /)
        const last = await until(async () => {
          const r = await peer.send('NOOP')
          return r.startsWith('421') ? r : undefined
        }, 'the end of the session')
        assert.equal(last, '421 4.7.0 Session longer than 3 seconds; reconnect to continue')
      } finally {
        peer.socket.destroy()
      }
    }))
})
