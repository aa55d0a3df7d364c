import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import {
  type AttributionHint,
  type Classification,
  classifyMessage,
  feedbackId,
  type MessageKind,
  messageToken,
  type RecipientReport,
  verpAddress,
} from '@atmos/mail-feedback'
import {
  CLASSIFY_OPTIONS,
  FEEDBACK_SENDER_ID,
  FIXTURE_POOL,
  MEMBER_DID,
  MEMBER_ID,
  MESSAGE_IDS,
} from './fixtures/identity.ts'

// The fixture corpus: reports shaped like the ones Gmail, Yahoo, Microsoft, Postfix, Exim,
// Exchange and qmail send, plus malformed ones. Each asserts what it is, what happened per
// recipient and every attribution clue, in the order the service weighs them.

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url))
const classify = (raw: Buffer | string) => classifyMessage(raw, CLASSIFY_OPTIONS)

type Key = keyof typeof MESSAGE_IDS
const id = (k: Key) => MESSAGE_IDS[k]
const did: AttributionHint = { kind: 'member-did', did: MEMBER_DID, source: 'returned-headers', verified: false }
const fbid: AttributionHint = { kind: 'feedback-id', memberId: MEMBER_ID, source: 'returned-headers', verified: false }
const dkim: AttributionHint = {
  kind: 'dkim-domain',
  domain: 'member.example',
  source: 'returned-headers',
  verified: false,
}
const ref = (k: Key): AttributionHint => ({
  kind: 'reference',
  messageId: id(k),
  source: 'returned-headers',
  verified: true,
})
const verp = (
  k: Key,
  source: 'original-mail-from' | 'return-path' | 'report-headers' | 'envelope-rcpt-to',
): AttributionHint => ({
  kind: 'verp',
  messageId: id(k),
  source,
  verified: true,
})

type Want = Partial<RecipientReport> & Pick<RecipientReport, 'address' | 'reason' | 'hard'>

function checkRecipients(got: Classification, want: Want[]) {
  assert.equal(got.recipients.length, want.length, JSON.stringify(got.recipients))
  want.forEach((w, i) => {
    const r = got.recipients[i]!
    for (const [k, v] of Object.entries(w)) assert.equal(r[k as keyof RecipientReport], v, `recipient ${i} ${k}`)
  })
}

interface Case {
  file: string
  kind: MessageKind
  recipients: Want[]
  attribution: AttributionHint[]
  feedbackType?: string
  notes?: RegExp
}

const cases: Case[] = [
  {
    file: 'arf-gmail.eml',
    kind: 'arf',
    feedbackType: 'abuse',
    recipients: [{ address: 'reader.one@gmail.example', reason: 'feedback', hard: false }],
    // The pool's own DKIM signature (d=atmos.test) says nothing about the member and is left out.
    attribution: [did, fbid, dkim, ref('gmail'), verp('gmail', 'original-mail-from'), verp('gmail', 'return-path')],
  },
  {
    file: 'arf-yahoo-cfl.eml',
    kind: 'arf',
    feedbackType: 'abuse',
    // Yahoo redacts the recipient; the returned To: is all there is.
    recipients: [{ address: 'redacted@yahoo.example', reason: 'feedback', hard: false }],
    attribution: [dkim, ref('yahoo'), verp('yahoo', 'original-mail-from'), verp('yahoo', 'return-path')],
  },
  {
    file: 'arf-microsoft-jmrp.eml',
    kind: 'arf',
    feedbackType: 'abuse',
    recipients: [{ address: 'reader.two@outlook.example', reason: 'feedback', hard: false }],
    attribution: [
      did,
      dkim,
      ref('microsoft'),
      verp('microsoft', 'original-mail-from'),
      verp('microsoft', 'return-path'),
    ],
  },
  {
    file: 'dsn-postfix.eml',
    kind: 'dsn',
    recipients: [
      {
        address: 'nobody.here@neighbour.example',
        action: 'failed',
        status: '5.1.1',
        replyCode: '550',
        remoteMta: 'mail.neighbour.example',
        reason: 'userunknown',
        hard: true,
      },
    ],
    attribution: [dkim, ref('postfix'), verp('postfix', 'return-path'), verp('postfix', 'report-headers')],
  },
  {
    file: 'dsn-exim.eml',
    kind: 'dsn',
    // Status: 5.0.0 in the report; the diagnostics quote the specific codes, which win.
    recipients: [
      { address: 'full.box@exim-host.example', status: '5.2.2', replyCode: '552', reason: 'mailboxfull', hard: false },
      {
        address: 'spam.trap@exim-host.example',
        status: '5.7.1',
        replyCode: '550',
        reason: 'spamdetected',
        hard: false,
      },
    ],
    attribution: [fbid, ref('exim'), verp('exim', 'return-path'), verp('exim', 'report-headers')],
  },
  {
    file: 'dsn-exchange.eml',
    kind: 'dsn',
    recipients: [
      { address: 'gone.person@contoso.example', status: '5.4.1', replyCode: '550', reason: 'userunknown', hard: true },
    ],
    attribution: [
      did,
      fbid,
      dkim,
      ref('exchange'),
      verp('exchange', 'return-path'),
      verp('exchange', 'report-headers'),
    ],
  },
  {
    file: 'dsn-postfix-delayed.eml',
    kind: 'dsn',
    recipients: [
      {
        address: 'slow.host@far-away.example',
        action: 'delayed',
        status: '4.4.1',
        reason: 'networkerror',
        hard: false,
      },
    ],
    attribution: [ref('delayed'), verp('delayed', 'return-path'), verp('delayed', 'report-headers')],
  },
  {
    file: 'plain-qmail.eml',
    kind: 'plain_bounce',
    recipients: [
      {
        address: 'left.company@qmail-site.example',
        status: '5.1.1',
        replyCode: '550',
        reason: 'userunknown',
        hard: true,
      },
    ],
    attribution: [did, ref('qmail'), verp('qmail', 'return-path'), verp('qmail', 'report-headers')],
  },
  {
    file: 'plain-generic.eml',
    kind: 'plain_bounce',
    recipients: [
      { address: 'petra.voll@smallisp.example', status: '4.2.2', replyCode: '452', reason: 'mailboxfull', hard: false },
    ],
    attribution: [ref('plain'), verp('plain', 'return-path'), verp('plain', 'report-headers')],
  },
  {
    file: 'auto-reply.eml',
    kind: 'auto_reply',
    recipients: [{ address: 'bob@colleague.example', reason: 'vacation', hard: false }],
    attribution: [verp('autoreply', 'report-headers')],
  },
  {
    file: 'operator-mail.eml',
    kind: 'other',
    recipients: [],
    attribution: [],
    notes: /not a delivery or feedback report/,
  },
  {
    file: 'malformed-truncated.eml',
    kind: 'dsn',
    recipients: [{ address: 'no.such.user@cut-short.example', status: '5.1.1', reason: 'userunknown', hard: true }],
    attribution: [verp('truncated', 'report-headers')],
    notes: /truncated/,
  },
  {
    file: 'malformed-missing-parts.eml',
    kind: 'unparseable',
    recipients: [],
    attribution: [],
    notes: /without a message\/feedback-report part/,
  },
  {
    file: 'malformed-wrong-charset.eml',
    kind: 'dsn',
    recipients: [
      { address: 'müller@latin.example', status: '5.1.1', replyCode: '550', reason: 'userunknown', hard: true },
    ],
    attribution: [ref('charset'), verp('charset', 'return-path'), verp('charset', 'report-headers')],
  },
]

describe('fixture reports', () => {
  for (const c of cases) {
    it(`${c.file}: ${c.kind}, per recipient and attributed`, async () => {
      const got = await classify(fixture(c.file))
      assert.equal(got.kind, c.kind)
      checkRecipients(got, c.recipients)
      assert.deepEqual(got.attribution, c.attribution)
      if (c.feedbackType) assert.equal(got.feedback?.feedbackType, c.feedbackType)
      if (c.notes) assert.match(got.notes.join('\n'), c.notes)
    })
  }

  it('reads every ARF field of a Gmail-style report and keeps the returned headers', async () => {
    const got = await classify(fixture('arf-gmail.eml'))
    assert.deepEqual(got.feedback, {
      feedbackType: 'abuse',
      userAgent: 'Gmail-FBL/1.0',
      version: '1',
      originalMailFrom: verpAddress(FIXTURE_POOL, id('gmail')),
      originalRcptTo: ['reader.one@gmail.example'],
      arrivalDate: 'Tue, 04 Mar 2025 09:58:41 +0000',
      sourceIp: '203.0.113.25',
      reportedDomain: 'member.example',
      authenticationResults:
        'mx.google.com; dkim=pass header.i=@member.example; spf=pass smtp.mailfrom=bounces.atmos.test',
    })
    assert.deepEqual(got.returnedHeaders?.['x-atmos-ref'], [messageToken(FIXTURE_POOL, id('gmail'))])
    assert.equal(got.returnedHeaders?.['dkim-signature']?.length, 2)
  })

  it('reads Yahoo CFL Received-Date as the arrival date', async () => {
    const got = await classify(fixture('arf-yahoo-cfl.eml'))
    assert.equal(got.feedback?.arrivalDate, 'Wed, 05 Mar 2025 13:51:02 +0000')
    assert.equal(got.feedback?.userAgent, 'Yahoo!-Mail-Feedback/2.0')
  })

  it('carries tokens made by the helpers with the fixture secret, and none verify under another', async () => {
    for (const k of Object.keys(MESSAGE_IDS) as Key[]) {
      const hits = readdirSync(new URL('./fixtures/', import.meta.url))
        .filter((f) => f.endsWith('.eml'))
        .filter((f) =>
          fixture(f)
            .toString('latin1')
            .includes(verpAddress(FIXTURE_POOL, id(k))),
        )
      assert.ok(hits.length >= 1, `no fixture carries the VERP address of ${k}`)
    }
    assert.ok(
      fixture('dsn-exim.eml')
        .toString()
        .includes(feedbackId({ memberId: MEMBER_ID, poolId: FEEDBACK_SENDER_ID })),
    )
    const forged = await classifyMessage(fixture('dsn-postfix.eml'), {
      ...CLASSIFY_OPTIONS,
      verp: { ...FIXTURE_POOL, secret: 'other' },
    })
    assert.deepEqual(forged.attribution, [dkim])
  })

  it('takes the envelope recipient (the VERP address the bounce came to) first among the tokens', async () => {
    const rcpt = verpAddress(FIXTURE_POOL, id('postfix'))
    const got = await classifyMessage(fixture('dsn-postfix.eml'), {
      ...CLASSIFY_OPTIONS,
      envelope: { mailFrom: '', rcptTo: [rcpt] },
    })
    assert.deepEqual(got.attribution.slice(2), [
      verp('postfix', 'envelope-rcpt-to'),
      verp('postfix', 'return-path'),
      verp('postfix', 'report-headers'),
    ])
  })

  it('gives no token hints without the pool secret, but still the header claims', async () => {
    const got = await classifyMessage(fixture('dsn-exchange.eml'), { feedbackSenderId: FEEDBACK_SENDER_ID })
    assert.deepEqual(got.attribution, [did, fbid, dkim])
  })
})

describe('malformed and hostile input', () => {
  it('reads a 20 MB report up to its bound, noting what it left unread', async () => {
    const head = fixture('dsn-postfix.eml')
      .toString('latin1')
      .replace(/\n--8C1F3A0142[^\n]*--\n?$/, '')
    const filler = `${'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwYWJjZGVmZ2hpams='.repeat(20)}\n`
    const big = Buffer.from(
      `${head}\n--8C1F3A0142.1741346404/mx.relay-neighbour.example\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n${filler.repeat(Math.ceil((20 * 1024 * 1024) / filler.length))}`,
      'latin1',
    )
    assert.ok(big.length >= 20 * 1024 * 1024)
    const got = await classify(big)
    assert.equal(got.kind, 'dsn')
    assert.equal(got.recipients[0]?.address, 'nobody.here@neighbour.example')
    assert.equal(got.recipients[0]?.hard, true)
    assert.deepEqual(
      got.attribution.find((h) => h.kind === 'reference'),
      ref('postfix'),
    )
    assert.match(got.notes.join('\n'), /only the first \d+ were read/)
  })

  it('calls binary garbage, empty input and text without headers unparseable, with a reason', async () => {
    const garbage = randomBytes(20 * 1024 * 1024)
    const cases: [Buffer | string, RegExp][] = [
      [garbage, /binary/],
      [Buffer.alloc(0), /empty/],
      ['\n\n\n', /empty/],
      ['just some words, no header block at all', /no header fields/],
    ]
    for (const [input, reason] of cases) {
      const got = await classify(input)
      assert.equal(got.kind, 'unparseable')
      assert.match(got.notes.join('\n'), reason)
      assert.deepEqual(got.recipients, [])
    }
  })

  it('never throws, whatever is cut off where', async () => {
    const whole = fixture('dsn-exim.eml')
    for (let cut = 0; cut < whole.length; cut += 97) {
      const got = await classify(whole.subarray(0, cut))
      assert.ok(
        ['dsn', 'plain_bounce', 'other', 'unparseable', 'auto_reply'].includes(got.kind),
        `cut at ${cut}: ${got.kind}`,
      )
    }
  })

  it('gives identical answers for CRLF and LF line endings', async () => {
    for (const c of cases) {
      const lf = fixture(c.file)
      const crlf = Buffer.from(lf.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1')
      assert.deepEqual(await classify(crlf), await classify(lf), c.file)
    }
  })
})
