import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '@atmos/config'
import { closeBaseContext, createBaseContext, createLogger } from '@atmos/runtime'
import { relayConfigSchema } from '../src/config.ts'
import type { AddedMember } from '../src/members/store.ts'
import { fieldValue, parseMessage } from '../src/message/headers.ts'
import { Submission } from '../src/submission/index.ts'
import {
  createMember,
  type Harness,
  POOL_DOMAIN,
  poolPublicKey,
  refusal,
  rfc822,
  SmtpDialog,
  spooled,
  startSubmission,
  submitRaw,
} from './helpers.ts'

// What a hostile member might submit to be read as someone else, or to change a message after
// it was checked and signed, against the real submission server over STARTTLS and AUTH. Raw
// messages go through SmtpDialog: nodemailer's client would already turn a lone CR or LF into
// CRLF, which is what an attacker's client does not do.

const VERIFIER = fileURLToPath(new URL('../../../packages/dkim/test/dkimverify.py', import.meta.url))

describe('relay submission: forged and malformed messages', () => {
  let h: Harness
  let alice: AddedMember

  before(async () => {
    h = await startSubmission()
    alice = await createMember(h, 'member.example')
  })
  after(async () => {
    await h?.close()
  })

  /** One transaction over a raw session: DATA's bytes exactly as given (dot-stuffed here), then the final reply. */
  async function submitBytes(port: number, message: string, rcpts = ['x@dest.example']): Promise<string> {
    const { dialog } = await SmtpDialog.open(port)
    try {
      await dialog.send('EHLO laptop.member.example')
      await dialog.starttls()
      await dialog.send('EHLO laptop.member.example')
      assert.match(await dialog.login(alice.username, alice.password), /^235 /)
      assert.match(await dialog.send('MAIL FROM:<alice@member.example>'), /^250 /)
      for (const r of rcpts) assert.match(await dialog.send(`RCPT TO:<${r}>`), /^250 /)
      assert.match(await dialog.send('DATA'), /^354 /)
      return await dialog.send(`${message.replace(/(^|\n)\./g, '$1..')}.`)
    } finally {
      dialog.close()
    }
  }

  const lastBody = async () => (await spooled(h.sql)).at(-1)!.body

  it('refuses a lone CR or LF in the header section with 550 5.6.0 naming the line and field', async () => {
    const count = (await spooled(h.sql)).length
    const injected = await submitBytes(
      h.port,
      'Subject: x\rFrom: ceo@other.example\r\nFrom: alice@member.example\r\nTo: x@dest.example\r\n\r\nhi\r\n',
    )
    assert.match(
      injected,
      /^550 5\.6\.0 line 1 of the message \(in the header section, field Subject\) holds a bare CR/,
    )
    // `\r\r` would end the header section early at the recipient.
    const early = await submitBytes(h.port, 'From: alice@member.example\r\nSubject: x\r\r\nBcc-Like: y\r\n\r\nhi\r\n')
    assert.match(early, /^550 5\.6\.0 line 2 .*field Subject\) holds a bare CR/)
    const lf = await submitBytes(
      h.port,
      'From: alice@member.example\r\nTo: x@dest.example\nFrom: ceo@other.example\r\n\r\nhi\r\n',
    )
    assert.match(lf, /^550 5\.6\.0 line 2 .*field To\) ends with a bare LF/)
    const bodyCr = await submitBytes(h.port, 'From: alice@member.example\r\n\r\nline one\r\nx\ry\r\n')
    assert.match(bodyCr, /^550 5\.6\.0 line 4 of the message \(in the body\) holds a bare CR/)
    assert.equal((await spooled(h.sql)).length, count)
    assert.ok(h.submission.metrics.refused.value({ reason: 'bad_headers' }) >= 4)
  })

  it('takes bare LFs in the body and spools them as CRLF, so the signature covers what is sent', async () => {
    const reply = await submitBytes(
      h.port,
      'From: alice@member.example\r\nSubject: unix\r\n\r\nfirst\nsecond\n\nthird\r\n',
    )
    assert.match(reply, /^250 /)
    const body = await lastBody()
    assert.ok(body.toString().endsWith('\r\n\r\nfirst\r\nsecond\r\n\r\nthird\r\n'))
    assert.ok(!/[^\r]\n|\r[^\n]/.test(body.toString('latin1')), 'no bare CR or LF left')
  })

  it('refuses a line over 998 octets (header or body; a 1 MiB line too) with 550 5.6.0', async () => {
    const count = (await spooled(h.sql)).length
    const long = await submitBytes(h.port, `From: alice@member.example\r\n\r\nshort\r\n${'x'.repeat(1024 * 1024)}\r\n`)
    assert.match(
      long,
      /^550 5\.6\.0 line 4 of the message \(in the body\) is longer than 998 octets \(RFC 5322 2\.1\.1\)/,
    )
    const subject = await submitBytes(h.port, `From: alice@member.example\r\nSubject: ${'s'.repeat(990)}\r\n\r\nx\r\n`)
    assert.match(subject, /^550 5\.6\.0 line 2 .*field Subject\) is longer than 998 octets/)
    assert.equal((await spooled(h.sql)).length, count)
    // 998 octets exactly is a line.
    const exact = await submitBytes(h.port, `From: alice@member.example\r\n\r\n${'y'.repeat(998)}\r\n`)
    assert.match(exact, /^250 /)
  })

  it('refuses a From that mainstream parsers read as another domain or as nothing', async () => {
    const count = (await spooled(h.sql)).length
    const cases: Array<[string, RegExp]> = [
      ['x@other.example <x@member.example>', /^550 5\.7\.1 From shows the address x@other\.example/],
      ['x@member.example x@other.example', /^550 5\.6\.0 the From header must be exactly one mailbox/],
      ['<x@member.example> x@other.example', /^550 5\.6\.0 the From header must be exactly one mailbox/],
      ['x@other.example@member.example', /^550 5\.6\.0 the From header .*more than one "@"/],
      ['x@member.example.', /^550 5\.6\.0 the From header .*domain ending in a dot/],
      ['"PayPal" <service@member.example/paypal.com>', /^550 5\.6\.0 the From header .*not a host name/],
      ['"ceo@other.example" <x@member.example>', /^550 5\.7\.1 From shows the address ceo@other\.example/],
      [
        '=?utf-8?b?Y2VvQG90aGVyLmV4YW1wbGU=?= <x@member.example>',
        /^550 5\.7\.1 From shows the address ceo@other\.example/,
      ],
      ['x@[127.0.0.1]', /^550 5\.6\.0 the From header .*address literal/],
      ['team: x@member.example;', /^550 5\.6\.0 the From header .*group/],
    ]
    for (const [from, pattern] of cases) {
      const err = await refusal(
        submitRaw(
          h.port,
          alice,
          { from: 'alice@member.example', to: ['x@dest.example'] },
          rfc822({ From: from, To: 'x@dest.example', Subject: 's' }, 'x\r\n'),
        ),
      )
      assert.equal(err.responseCode, 550, from)
      assert.match(err.response ?? '', pattern, from)
    }
    for (const [field, value, pattern] of [
      ['Sender', 'x@member.example x@other.example', /^550 5\.6\.0 the Sender header/],
      ['Resent-From', 'ceo@other.example', /^550 5\.7\.1 Resent-From must be an address at member\.example/],
      ['Resent-Sender', '"ceo@other.example" <x@member.example>', /^550 5\.7\.1 Resent-Sender shows/],
    ] as const) {
      const err = await refusal(
        submitRaw(
          h.port,
          alice,
          { from: 'alice@member.example', to: ['x@dest.example'] },
          rfc822({ From: 'alice@member.example', [field]: value }, 'x\r\n'),
        ),
      )
      assert.match(err.response ?? '', pattern, field)
    }
    assert.equal((await spooled(h.sql)).length, count)
  })

  it('removes the fields a member may not supply, whatever their case or folding', async () => {
    const headers = [
      'From: Alice <alice@member.example>',
      'To: x@dest.example',
      'DKIM-Signature: v=1; a=rsa-sha256; d=member.example; s=atmos1;',
      '\th=from; bh=forged; b=forged',
      'dkim-signature: v=1; d=other.example; b=x',
      'ARC-Seal: i=1; a=rsa-sha256; cv=none; d=other.example; b=x',
      'ARC-Message-Signature: i=1; d=other.example; b=x',
      'arc-authentication-results: i=1; mx.other.example; dmarc=pass',
      'Authentication-Results: mx.dest.example;',
      ' dkim=pass header.d=paypal.com',
      'Received-SPF: pass (mx.dest.example: domain of paypal.com designates us)',
      'Resent-Bcc: everyone@secret.example',
      'X-ATMOS-MEMBER-DID: did:plc:someoneelse',
      'X-Atmos-Whatever: 1',
      'Feedback-ID: forged:m1:atmos:atmospool',
      'Subject: fine',
    ]
    const info = await submitRaw(
      h.port,
      alice,
      { from: 'alice@member.example', to: ['x@dest.example'] },
      `${headers.join('\r\n')}\r\n\r\nhello\r\n`,
    )
    assert.match(info.response, /^250 /)
    const keys = parseMessage(await lastBody()).fields.map((f) => f.key)
    assert.deepEqual(keys.slice(0, 8), [
      'dkim-signature',
      'dkim-signature',
      'dkim-signature',
      'received',
      'feedback-id',
      'x-atmos-member-did',
      'x-atmos-ref',
      'message-id',
    ])
    assert.deepEqual(keys.slice(8), ['date', 'from', 'to', 'subject'])
    const parsed = parseMessage(await lastBody())
    assert.deepEqual(parsed.fields.filter((f) => f.key === 'x-atmos-member-did').map(fieldValue), [alice.did])
  })

  it('adds a signed Received naming the relay (ESMTPSA, id, for one recipient, date), not the client', async () => {
    await submitRaw(
      h.port,
      alice,
      { from: 'alice@member.example', to: ['one@dest.example'] },
      rfc822({ From: 'alice@member.example', To: 'one@dest.example' }, 'x\r\n'),
    )
    const one = (await spooled(h.sql)).at(-1)!
    const received = parseMessage(one.body)
      .fields.filter((f) => f.key === 'received')
      .map(fieldValue)
    assert.equal(received.length, 1)
    assert.match(
      received[0]!,
      new RegExp(
        `^by localhost with ESMTPSA id ${one.id}\\s+for <one@dest\\.example>;\\s+\\w{3}, \\d{2} \\w{3} \\d{4} \\d\\d:\\d\\d:\\d\\d \\+0000$`,
      ),
    )
    assert.ok(!received[0]!.includes('127.0.0.1'))
    const sigs = parseMessage(one.body)
      .fields.filter((f) => f.key === 'dkim-signature')
      .map(fieldValue)
    for (const sig of sigs) assert.match(sig.replace(/\s+/g, ''), /h=[^;]*\breceived\b/i)

    // Two recipients: no `for`, which would tell each who else was written to.
    await submitRaw(
      h.port,
      alice,
      { from: 'alice@member.example', to: ['a@dest.example', 'b@dest.example'] },
      rfc822({ From: 'alice@member.example', To: 'a@dest.example' }, 'x\r\n'),
    )
    for (const row of (await spooled(h.sql)).slice(-2)) {
      const r = parseMessage(row.body)
        .fields.filter((f) => f.key === 'received')
        .map(fieldValue)
      assert.match(r[0]!, new RegExp(`^by localhost with ESMTPSA id ${row.id};`))
    }
  })

  it('names the client in Received when relay.submission.receivedClientAddress is on', async () => {
    const config = loadConfig(relayConfigSchema, {
      env: {
        ...h.env,
        ATMOS_RELAY_SUBMISSION_PORT: '0',
        ATMOS_RELAY_SUBMISSION_HOSTNAME: 'submit.pool.example',
        ATMOS_RELAY_SUBMISSION_RECEIVED_CLIENT_ADDRESS: 'true',
      },
    })
    const ctx = createBaseContext('relay', config, { logger: createLogger('relay', 'silent') })
    const replica = new Submission(ctx)
    await replica.start()
    try {
      assert.match(
        await submitBytes(replica.addresses.starttls!.port, 'From: alice@member.example\r\n\r\nx\r\n'),
        /^250 /,
      )
    } finally {
      await replica.stop()
      await closeBaseContext(ctx)
    }
    const row = (await spooled(h.sql)).at(-1)!
    const received = parseMessage(row.body)
      .fields.filter((f) => f.key === 'received')
      .map(fieldValue)
    assert.match(
      received[0]!,
      new RegExp(
        `^from laptop\\.member\\.example \\(\\[127\\.0\\.0\\.1\\]\\)\\s+by submit\\.pool\\.example with ESMTPSA id ${row.id}\\s+for <x@dest\\.example>;`,
      ),
    )
  })

  it('a field that matters, prepended after signing, breaks all three signatures (python3-dkim)', async () => {
    await submitRaw(
      h.port,
      alice,
      { from: 'alice@member.example', to: ['v@dest.example'] },
      rfc822({ From: 'alice@member.example', To: 'v@dest.example', Subject: 'real' }, 'x\r\n'),
    )
    const body = await lastBody()
    const records = {
      ...Object.fromEntries(alice.keys.map((k) => [k.txtName, k.txt])),
      [`pool1._domainkey.${POOL_DOMAIN}`]: `v=DKIM1; k=rsa; p=${await poolPublicKey(h.sql)}`,
    }
    const forged = [
      'X-Atmos-Member-Did: did:plc:victim',
      'Feedback-ID: tx:m1:atmos:atmospool',
      'X-Atmos-Ref: x.y',
      'Subject: fake',
      'Sender: ceo@member.example',
    ]
    const messages = [body, ...forged.map((f) => Buffer.concat([Buffer.from(`${f}\r\n`), body]))]
    const verdicts = await new Promise<Array<Array<{ pass: boolean }>>>((resolve, reject) => {
      const child = execFile('/usr/bin/python3', [VERIFIER, JSON.stringify(records)], (err, stdout, stderr) =>
        err ? reject(new Error(stderr || err.message)) : resolve(JSON.parse(stdout)),
      )
      child.stdin!.end(JSON.stringify(messages.map((m) => m.toString('base64'))))
    })
    assert.deepEqual(
      verdicts.map((v) => v.map((r) => r.pass)),
      [[true, true, true], ...forged.map(() => [false, false, false])],
    )
  })
})
