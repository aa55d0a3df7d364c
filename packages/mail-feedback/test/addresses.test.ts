import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { mailbox } from '../src/address/mailbox.ts'
import { type Classification, classifyMessage } from '../src/index.ts'
import { parseMessage } from '../src/mime/parse.ts'
import { CORPUS, corpusFiles } from './corpus.ts'

// Whatever a report holds, a recipient the classifier names is an address that report
// names: garbage becomes '' (not named), never a "hard bounce" for a string nobody sent
// to. When a report names more recipients than are read, the classification says so.

function report(parts: { type: string; headers?: string[]; body: string[] }[], top: string[] = []): string {
  const lines = [
    'From: MAILER-DAEMON@mx.example.net',
    'To: b+token@bounces.example.org',
    'Subject: Undelivered Mail Returned to Sender',
    'MIME-Version: 1.0',
    ...top,
  ]
  const type = parts.some((p) => p.type === 'message/feedback-report') ? 'feedback-report' : 'delivery-status'
  lines.push(`Content-Type: multipart/report; report-type=${type}; boundary="b"`, '')
  for (const p of parts) lines.push('--b', `Content-Type: ${p.type}`, ...(p.headers ?? []), '', ...p.body, '')
  lines.push('--b--', '')
  return lines.join('\r\n')
}

const notification = { type: 'text/plain', body: ['Your message could not be delivered.'] }

function dsnBlock(address: string, status = '5.1.1'): string[] {
  return [`Final-Recipient: rfc822; ${address}`, 'Action: failed', `Status: ${status}`, '']
}

/** Every recipient is '' or a valid address that the report contains (as sent, or decoded). */
async function assertNamedAddresses(raw: string | Buffer, c: Classification, what: string) {
  const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw)
  const decoded = await parseMessage(buf)
  const text = [buf.toString('latin1'), buf.toString('utf8'), decoded.text, ...decoded.parts.map((p) => p.text)]
    .join('\n')
    .toLowerCase()
  for (const r of c.recipients) {
    if (!r.address) continue
    assert.equal(mailbox(r.address), r.address, `${what}: ${JSON.stringify(r.address)} is not an address`)
    assert.ok(text.includes(r.address), `${what}: ${r.address} is not in the report`)
  }
}

describe('recipient addresses', () => {
  it('reports a Final-Recipient glued to the next field by a broken quoted-printable soft break as not named', async () => {
    const raw = report([
      notification,
      {
        type: 'message/delivery-status',
        headers: ['Content-Transfer-Encoding: quoted-printable'],
        body: [
          'Reporting-MTA: dns; mx.example.net',
          '',
          'Final-Recipient: rfc822; alice@dest.example=',
          'Action: fail=zzed',
          'Status: 5.1.1',
          'Diagnostic-Code: smtp; 550 5.1.1 user unknown',
        ],
      },
    ])
    const c = await classifyMessage(raw)
    assert.equal(c.kind, 'dsn')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.status]),
      [['', '5.1.1']],
    )
  })

  it('reports an address with a NUL in a returned header as not named', async () => {
    const raw = report([
      { type: 'text/plain', body: ['This is an abuse report.'] },
      { type: 'message/feedback-report', body: ['Feedback-Type: abuse', 'User-Agent: isp/1.0', 'Version: 1'] },
      {
        type: 'text/rfc822-headers',
        body: ['From: sender@member.example', 'To: alice@dest.exa\0mple', 'Subject: hello'],
      },
    ])
    const c = await classifyMessage(raw)
    assert.equal(c.kind, 'arf')
    assert.deepEqual(
      c.recipients.map((r) => r.address),
      [''],
    )
  })

  it('falls back to Original-Recipient when Final-Recipient is not an address', async () => {
    const raw = report([
      notification,
      {
        type: 'message/delivery-status',
        body: [
          'Reporting-MTA: dns; mx.example.net',
          '',
          'Final-Recipient: rfc822; |/usr/local/bin/filter alice@dest.example',
          'Original-Recipient: rfc822; alice@dest.example',
          'Action: failed',
          'Status: 5.1.1',
        ],
      },
    ])
    const c = await classifyMessage(raw)
    assert.deepEqual(
      c.recipients.map((r) => r.address),
      ['alice@dest.example'],
    )
  })

  it('names only valid addresses of plain-text bounces and X-Failed-Recipients', async () => {
    const raw = [
      'From: Mail Delivery System <MAILER-DAEMON@mx.example.net>',
      'To: b+token@bounces.example.org',
      'Subject: Mail delivery failed: returning message to sender',
      'X-Failed-Recipients: bob@dest.example, not an address, carol@@dest.example, dave@192.0.2.1',
      '',
      'This message was created automatically by mail delivery software.',
      '',
      'A message that you sent could not be delivered to one or more of its recipients.',
      '',
      '  bob@dest.example',
      '    SMTP error from remote mail server after RCPT TO:<bob@dest.example>:',
      '    550 5.1.1 user unknown',
      '',
    ].join('\n')
    const c = await classifyMessage(raw)
    assert.equal(c.kind, 'plain_bounce')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.hard]),
      [['bob@dest.example', true]],
    )
  })

  it('accepts the mailbox forms RFC 5321 and RFC 6531 allow, and nothing else', () => {
    for (const ok of [
      'alice@dest.example',
      'a.b+tag@sub.dest.example',
      '"john doe"@dest.example',
      'user@[192.0.2.1]',
      'user@[ipv6:2001:db8::1]',
      'пользователь@пример.рф',
      "o'hara@dest.example",
    ])
      assert.equal(mailbox(ok), ok.toLowerCase(), ok)
    for (const bad of [
      '',
      'alice',
      'alice@',
      '@dest.example',
      'alice@dest',
      'alice@192.0.2.1',
      'alice@dest.exampleaction: fail=zzed',
      'alice@dest.exa\0mple',
      'al\0ice@dest.example',
      'al ice@dest.example',
      'alice..b@dest.example',
      '.alice@dest.example',
      'alice@dest..example',
      'alice@-dest.example',
      'alice@dest.example.',
      `${'a'.repeat(65)}@dest.example`,
      `alice@${'a'.repeat(64)}.example`,
      'al\ufffdice@dest.example',
      '<alice@dest.example>',
    ])
      assert.equal(mailbox(bad), '', JSON.stringify(bad))
  })

  it('names only addresses in the report, in every file of the shared corpus', async () => {
    for (const f of corpusFiles()) {
      const raw = readFileSync(join(CORPUS, 'eml', f))
      await assertNamedAddresses(raw, await classifyMessage(raw), f)
    }
  })
})

describe('recipients past the limit', () => {
  it('says how many a DSN named when it keeps only the first 500', async () => {
    const blocks = Array.from({ length: 10_000 }, (_, i) => dsnBlock(`user${i}@dest.example`)).flat()
    const raw = report([
      notification,
      { type: 'message/delivery-status', body: ['Reporting-MTA: dns; mx.example.net', '', ...blocks] },
    ])
    const c = await classifyMessage(raw)
    assert.equal(c.kind, 'dsn')
    assert.equal(c.recipients.length, 500)
    assert.deepEqual(c.truncated, { kept: 500, seen: 10_000 })
    assert.ok(
      c.notes.some((n) => /10000 recipients; only the first 500/.test(n)),
      c.notes.join('; '),
    )
    await assertNamedAddresses(raw, c, 'dsn')
  })

  it('says so for a plain bounce naming more addresses than it reads, and for X-Failed-Recipients', async () => {
    const names = Array.from({ length: 150 }, (_, i) => `user${i}@dest.example`)
    const plain = [
      'From: MAILER-DAEMON@mx.example.net',
      'To: b+token@bounces.example.org',
      'Subject: Undeliverable',
      '',
      'Delivery to the following recipients failed permanently:',
      '',
      ...names.map((n) => `  ${n}: 550 user unknown`),
      '',
    ].join('\n')
    const c = await classifyMessage(plain)
    assert.equal(c.kind, 'plain_bounce')
    assert.deepEqual(c.truncated, { kept: 100, seen: 150 })

    const many = Array.from({ length: 1200 }, (_, i) => `user${i}@dest.example`)
    const failed = `From: MAILER-DAEMON@mx.example.net\nSubject: Mail delivery failed\nX-Failed-Recipients: ${many.join(', ')}\n\nFailed.\n`
    const x = await classifyMessage(failed)
    assert.deepEqual(x.truncated, { kept: 500, seen: 1200 })
    assert.equal(x.recipients.length, 500)
  })

  it('leaves truncated out when every recipient is reported', async () => {
    const raw = report([
      notification,
      {
        type: 'message/delivery-status',
        body: ['Reporting-MTA: dns; mx.example.net', '', ...dsnBlock('a@dest.example')],
      },
    ])
    const c = await classifyMessage(raw)
    assert.equal(c.truncated, undefined)
    assert.equal('truncated' in c, false)
  })
})
