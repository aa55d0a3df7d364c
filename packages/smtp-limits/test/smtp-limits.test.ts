import assert from 'node:assert/strict'
import { connect as netConnect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import type { SMTPServerOptions } from 'smtp-server'
import {
  addressKey,
  type LimitEvent,
  LimitedSMTPServer,
  type LimitOptions,
  MessageRate,
  type SmtpLimits,
} from '../src/index.ts'

/** Quiet defaults every test server starts from: limits wide open unless a test narrows them. */
const OPEN_LIMITS: SmtpLimits = {
  maxConnectionsPerAddress: 5,
  establishTimeout: 60_000,
  maxSessionLength: 60_000,
  minDataRate: 0,
  dataRateWindow: 1000,
}

/** A LimitedSMTPServer on a free loopback port, and its port. */
async function listening(
  options: SMTPServerOptions,
  limits: Partial<SmtpLimits>,
  opts: Partial<Omit<LimitOptions, 'limits'>> = {},
): Promise<{ server: LimitedSMTPServer; port: number }> {
  const server = new LimitedSMTPServer(
    { logger: false, authOptional: true, disableReverseLookup: true, ...options },
    { establishedBy: 'rcpt', authAfterTls: true, ...opts, limits: { ...OPEN_LIMITS, ...limits } },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.server.address() as { port: number }).port }
}

describe('addressKey', () => {
  it('counts IPv4 addresses one by one, IPv4-mapped ones as IPv4', () => {
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7')
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7')
    assert.equal(addressKey('::FFFF:192.0.2.7'), '192.0.2.7')
  })

  it('counts IPv6 addresses by their /64, however they are written', () => {
    const key = '2001:db8:1:2::/64'
    assert.equal(addressKey('2001:db8:1:2::1'), key)
    assert.equal(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), key)
    assert.equal(addressKey('2001:DB8:1:2:a:b:c:d'), key)
    assert.equal(addressKey('2001:db8:1:2:0:0:1.2.3.4'), key)
    assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
    assert.equal(addressKey('::1'), '0:0:0:0::/64')
    assert.notEqual(addressKey('2001:db8:1:3::1'), key)
  })
})

describe('LimitedSMTPServer on implicit TLS', () => {
  let server: LimitedSMTPServer
  let port: number
  const events: LimitEvent[] = []

  before(async () => {
    ;({ server, port } = await listening(
      { secure: true },
      { maxConnectionsPerAddress: 1 },
      { onLimit: (e) => events.push(e) },
    ))
  })
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  it('drops a connection over the limit before its handshake, without a byte written', async () => {
    const first = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false })
    first.on('error', () => {})
    const greeting = await new Promise<string>((resolve) => first.once('data', (d) => resolve(String(d))))
    assert.match(greeting, /^220 /)
    try {
      const second = netConnect({ port, host: '127.0.0.1' })
      let received = 0
      second.on('data', (d) => {
        received += d.length
      })
      second.on('error', () => {})
      await new Promise((resolve) => second.once('close', resolve))
      assert.equal(received, 0)
      assert.deepEqual(events, [{ reason: 'address_connections', address: '127.0.0.1', key: '127.0.0.1', first: true }])
    } finally {
      first.destroy()
    }
  })
})

describe('LimitedSMTPServer replies', () => {
  let server: LimitedSMTPServer
  let port: number

  before(async () => {
    ;({ server, port } = await listening(
      {
        onMailFrom: (_address, _session, cb) =>
          cb(Object.assign(new Error('5.7.1 Not from here'), { responseCode: 550 })),
      },
      {},
    ))
  })
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  it("carry an enhanced status code, smtp-server's own ones too, and EHLO says so; ours keep theirs", async () => {
    const socket = netConnect({ port, host: '127.0.0.1' })
    socket.setEncoding('utf8')
    let buffer = ''
    const waiting: Array<(reply: string) => void> = []
    socket.on('data', (chunk: string) => {
      buffer += chunk
      // A reply ends with a line whose code is followed by a space.
      for (let m = /(?:^|\r\n)\d{3} [^\r\n]*\r\n/.exec(buffer); m; m = /(?:^|\r\n)\d{3} [^\r\n]*\r\n/.exec(buffer)) {
        const reply = buffer.slice(0, m.index + m[0].length)
        buffer = buffer.slice(reply.length)
        waiting.shift()?.(reply.trim())
      }
    })
    const next = () => new Promise<string>((resolve) => waiting.push(resolve))
    const send = (line: string) => {
      const reply = next()
      socket.write(`${line}\r\n`)
      return reply
    }
    try {
      assert.match(await next(), /^220 /)
      assert.match(await send('EHLO client.example'), /^250[ -]ENHANCEDSTATUSCODES$/m)
      // smtp-server's own syntax error, with the code RFC 3463 gives a bad sender address.
      assert.match(await send('MAIL FROM:<a@b.example.>'), /^501 5\.1\.7 /)
      // An application's reply goes out as written: one enhanced code, not two.
      assert.equal(await send('MAIL FROM:<a@b.example>'), '550 5.7.1 Not from here')
      assert.match(await send('DATA'), /^503 5\.5\.1 /)
    } finally {
      socket.destroy()
    }
  })
})

/** A raw dialog on one connection from a loopback address of our choice: each command's final reply line. */
async function dialog(port: number, localAddress: string, commands: string[]): Promise<string[]> {
  const socket = netConnect({ port, host: '127.0.0.1', localAddress })
  socket.setEncoding('utf8')
  let buffer = ''
  const lines: string[] = []
  const waiting: Array<(reply: string) => void> = []
  socket.on('data', (chunk: string) => {
    buffer += chunk
    for (let m = /^(\d{3}) ([^\r\n]*)\r\n/m.exec(buffer); m; m = /^(\d{3}) ([^\r\n]*)\r\n/m.exec(buffer)) {
      buffer = buffer.slice(m.index + m[0].length)
      const reply = `${m[1]} ${m[2]}`
      const w = waiting.shift()
      if (w) w(reply)
      else lines.push(reply)
    }
  })
  socket.on('error', () => {})
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const queued = lines.shift()
      if (queued) return resolve(queued)
      const timer = setTimeout(() => reject(new Error('no reply')), 10_000)
      waiting.push((r) => {
        clearTimeout(timer)
        resolve(r)
      })
    })
  const out: string[] = []
  try {
    await next()
    for (const c of commands) {
      socket.write(`${c}\r\n`)
      out.push(await next())
    }
  } finally {
    socket.destroy()
  }
  return out
}

describe('LimitedSMTPServer message rate', () => {
  let server: LimitedSMTPServer
  let port: number
  const events: LimitEvent[] = []
  const stored: string[] = []

  before(async () => {
    ;({ server, port } = await listening(
      {
        onData: (stream, session, cb) => {
          stream.resume()
          stream.on('end', () => {
            stored.push(session.remoteAddress)
            cb(null, '2.0.0 Ok')
          })
        },
      },
      { maxMessagesPerAddress: 2, messageRateWindow: 3_600_000 },
      { authAfterTls: false, onLimit: (e) => events.push(e) },
    ))
  })
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  const message = (from: string) => [
    `MAIL FROM:<${from}>`,
    'RCPT TO:<a@here.example>',
    'DATA',
    'Subject: x\r\n\r\nx\r\n.',
  ]

  it('refuses MAIL FROM with 450 4.7.1 once an address began its messages for the window, on any connection; other addresses go on', async () => {
    const first = await dialog(port, '127.0.0.7', [
      'EHLO a.example',
      ...message('a@a.example'),
      ...message('b@a.example'),
    ])
    assert.deepEqual(
      first.slice(1).map((r) => r.slice(0, 3)),
      ['250', '250', '354', '250', '250', '250', '354', '250'],
    )
    // A new connection from the same address does not start the count over.
    const [, refused] = await dialog(port, '127.0.0.7', ['EHLO a.example', 'MAIL FROM:<c@a.example>'])
    assert.match(refused!, /^450 4\.7\.1 Too many messages from 127\.0\.0\.7: at most 2 in 60 minutes; try again in /)
    const [, again] = await dialog(port, '127.0.0.7', ['EHLO a.example', 'MAIL FROM:<d@a.example>'])
    assert.match(again!, /^450 4\.7\.1 /)
    const other = await dialog(port, '127.0.0.8', ['EHLO b.example', ...message('a@b.example')])
    assert.equal(other.at(-1), '250 2.0.0 Ok')
    assert.deepEqual(stored, ['127.0.0.7', '127.0.0.7', '127.0.0.8'])
    // A flood is worth one log line.
    assert.deepEqual(
      events.filter((e) => e.reason === 'message_rate').map((e) => [e.key, e.first]),
      [
        ['127.0.0.7', true],
        ['127.0.0.7', false],
      ],
    )
  })

  it('forgets a key once its window has passed', () => {
    const t0 = 1_000_000
    const r = new MessageRate(2, 1000)
    r.hit('k', t0)
    r.hit('k', t0 + 10)
    assert.equal(r.waitFor('k', t0 + 20), 980)
    assert.equal(r.waitFor('k', t0 + 1001), 0)
    assert.equal(r.size, 1)
    r.hit('other', t0 + 5000)
    assert.equal(r.size, 1, 'the expired key was swept')
  })
})
