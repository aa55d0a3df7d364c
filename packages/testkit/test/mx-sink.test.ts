import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { createTransport } from 'nodemailer'
import { MxSink } from '../src/index.ts'

type SmtpError = Error & { responseCode?: number }

function send(port: number, envelope: { from: string; to: string[] }, raw: string, host = '127.0.0.1') {
  const transport = createTransport({ host, port, secure: false, tls: { rejectUnauthorized: false } })
  return transport.sendMail({ envelope, raw }).finally(() => transport.close())
}

const message = (subject: string) => `Subject: ${subject}\r\n\r\nHello.\r\n`

describe('MxSink', () => {
  const sinks: MxSink[] = []
  after(async () => {
    for (const sink of sinks) await sink.close()
  })

  it('keeps the envelope and raw message, over STARTTLS, and counts sessions', async () => {
    const sink = new MxSink({ name: 'a' })
    sinks.push(sink)
    const port = await sink.start()
    assert.equal(sink.port, port)
    await send(
      port,
      { from: 'b@sender.example', to: ['Ann@Recipient.example', 'bob@recipient.example'] },
      message('one'),
    )

    assert.equal(sink.count, 1)
    const [got] = sink.to('ann@recipient.example')
    assert.ok(got)
    assert.equal(got.mailFrom, 'b@sender.example')
    assert.deepEqual(got.rcptTo, ['ann@recipient.example', 'bob@recipient.example'])
    assert.match(got.raw, /^Subject: one\r\n/)
    assert.equal(got.secure, true)
    assert.equal(got.sink, 'a')
    assert.equal(sink.perSession.get(got.sessionId), 1)
    assert.equal(sink.sessions, 1)
    assert.equal(sink.maxOpen, 1)
  })

  it('answers as scripted per recipient and per message, and keeps only what it accepted', async () => {
    const sink = new MxSink()
    sinks.push(sink)
    const port = await sink.start()
    sink.onRcpt = (to) => (to === 'nobody@r.example' ? { code: 550, text: '5.1.1 User unknown' } : undefined)
    sink.onMessage = (to) => (to === 'full@r.example' ? { code: 452, text: '4.2.2 Mailbox full' } : undefined)

    const unknown = await send(port, { from: 'b@s.example', to: ['nobody@r.example'] }, message('x')).catch(
      (err: SmtpError) => err,
    )
    assert.equal((unknown as SmtpError).responseCode, 550)
    const full = await send(port, { from: 'b@s.example', to: ['full@r.example'] }, message('x')).catch(
      (err: SmtpError) => err,
    )
    assert.equal((full as SmtpError).responseCode, 452)
    await send(port, { from: '', to: ['ok@r.example'] }, message('bounce'))

    assert.equal(sink.count, 1)
    assert.deepEqual(
      sink.received.map((r) => [r.mailFrom, r.rcptTo]),
      [['', ['ok@r.example']]],
    )
  })

  it('shares one port across loopback addresses, holds DATA replies, and reaches a count', async () => {
    const a = new MxSink({ name: 'a', host: '127.0.0.2' })
    const b = new MxSink({ name: 'b', host: '127.0.0.3', keep: false, size: 1024 * 1024 })
    sinks.push(a, b)
    const port = await a.start()
    assert.equal(await b.start(port), port)
    b.dataDelayMs = 100

    const reached = b.reach(2, 5000)
    assert.equal(await b.reach(2, 50), false, 'not yet')
    const t0 = Date.now()
    await Promise.all([
      send(port, { from: 's@s.example', to: ['x@r.example'] }, message('1'), '127.0.0.3'),
      send(port, { from: 's@s.example', to: ['y@r.example'] }, message('2'), '127.0.0.3'),
    ])
    assert.ok(Date.now() - t0 >= 100, 'the reply to DATA was held')
    assert.equal(await reached, true)
    assert.equal(b.count, 2)
    assert.equal(b.received.length, 0, 'keep: false keeps nothing')
    assert.equal(b.maxOpen, 2)
    assert.equal(a.count, 0)
  })
})
