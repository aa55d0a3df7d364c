import assert from 'node:assert/strict'
import { isMainThread, parentPort, workerData } from 'node:worker_threads'
import { mailbox } from '../src/address/mailbox.ts'
import { classifyMessage, diagnose } from '../src/index.ts'
import { addressOf } from '../src/mime/headers.ts'
import { plainRecipients } from '../src/plain/recipients.ts'
import { reasonFromText } from '../src/reason/rules.ts'

// Input built to make a backtracking pattern or a rescanning loop do quadratic work, at
// the inbound size limit (fblIngest.smtp.maxSize, 25 MiB by default: the classifier reads
// its first 4 MiB) and, for the functions that see text before any bound, at 1 MiB.
//
// How the work is bounded without a clock in the test: each case only has to finish, with
// node:test's timeout (30 s) as the one clock. A linear run takes well under a second
// here; the quadratic one this replaces took about 47 s of CPU for the 9 KB Diagnostic-Code
// of the report (`550 ` and `a@` 4,000 times) and would not finish at these sizes in
// hours. That recheck finds every pattern linear is checked in redos.test.ts.

const INBOUND_LIMIT = 25 * 1024 * 1024
const MIB = 1024 * 1024

function fill(unit: string, length: number): string {
  return unit.repeat(Math.ceil(length / unit.length)).slice(0, length)
}

export const BOUNCE_HEAD = [
  'From: MAILER-DAEMON@mx.example.net',
  'To: b+token@bounces.example.org',
  'Subject: Undelivered Mail Returned to Sender',
  'Content-Type: text/plain',
  '',
  '',
].join('\n')

export function dsn(diagnostic: string, blocks = ''): string {
  return [
    'From: MAILER-DAEMON@mx.example.net',
    'Subject: Undelivered Mail',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'Delivery failed.',
    '',
    '--b',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.net',
    '',
    blocks ||
      [
        'Final-Recipient: rfc822; kim@dest.example',
        'Action: failed',
        'Status: 5.0.0',
        `Diagnostic-Code: smtp; ${diagnostic}`,
      ].join('\n'),
    '',
    '--b--',
    '',
  ].join('\n')
}

/** Classifies and checks what any classification must hold: valid addresses only. */
async function classifyHostile(raw: string) {
  const c = await classifyMessage(raw)
  for (const r of c.recipients) if (r.address) assert.equal(mailbox(r.address), r.address)
  return c
}

export const CASES: Record<string, () => unknown> = {
  'reads the issue\'s Diagnostic-Code ("550 " and "a@" 4,000 times) and a MiB of it': async () => {
    const issue = `550 ${'a@'.repeat(4000)}`
    assert.equal(reasonFromText(issue), '')
    assert.equal(reasonFromText(`550 ${fill('a@', MIB)}`), '')
    const d = diagnose({ texts: [issue], context: [fill('550 -a', MIB)] })
    assert.equal(d.replyCode, '550')
    const c = await classifyHostile(dsn(issue))
    assert.equal(c.kind, 'dsn')
    assert.equal(c.recipients[0]?.address, 'kim@dest.example')
  },

  "reads a MiB of each rule's opening words repeated without their ending": () => {
    for (const unit of [
      'client host ',
      'sender domain ',
      'name service error ',
      'not authenticated ',
      'connection refused ',
      'mailbox unavailable ',
      'unrouteable address ',
      'insufficient space ',
      '551 ',
      'ip ',
      'exceeded ',
      '-e.',
      'x@',
      '550 <a@b',
    ])
      reasonFromText(fill(unit, MIB))
  },

  'finds addresses in a MiB without one, with one @, or with 100,000': () => {
    assert.equal(addressOf(fill('a', MIB)), '')
    assert.equal(mailbox(addressOf(`<${fill('@', MIB)}`)), '')
    assert.equal(addressOf(`${fill('.', MIB)}@`), '')
    assert.deepEqual(plainRecipients(fill('a-', MIB), new Set()).recipients, [])
    assert.deepEqual(plainRecipients(`${fill('a', MIB)}@dest.example`, new Set()).recipients, [])
    const many = plainRecipients(fill('u@dest.example ', MIB), new Set())
    assert.equal(many.recipients.length, 1)
    const distinct = plainRecipients(
      Array.from({ length: 100_000 }, (_, i) => `u${i}@dest.example`).join(' '),
      new Set(),
    )
    assert.deepEqual([distinct.recipients.length, distinct.seen], [100, 100_000])
  },

  'classifies bounces of the inbound size limit made of one pathological pattern': async () => {
    const bodies: [string, string][] = [
      ['a@ repeated', fill('a@', INBOUND_LIMIT)],
      ['address characters without @', fill('x', INBOUND_LIMIT)],
      ['one address repeated on one line', fill('u@dest.example ', INBOUND_LIMIT)],
      ['blank-line gaps of tabs', `x@dest.example\n${fill('\n\t', INBOUND_LIMIT)}`],
      ['a separator line of stars', `**${fill('*', INBOUND_LIMIT)}`],
      ['indented header-like lines', fill(' \t\n', INBOUND_LIMIT)],
      ['reply codes before address characters', fill('400-a', INBOUND_LIMIT)],
    ]
    for (const [what, body] of bodies) {
      const c = await classifyHostile(BOUNCE_HEAD + body)
      assert.equal(c.kind, 'plain_bounce', what)
    }
  },

  'classifies HTML of the inbound size limit full of unclosed style tags': async () => {
    const raw = `From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered\nContent-Type: text/html\n\n${fill('<style<', INBOUND_LIMIT)}`
    await classifyHostile(raw)
  },

  'classifies DSNs of the inbound size limit: one vast Diagnostic-Code, or recipient blocks to the end': async () => {
    const vast = await classifyHostile(`${dsn(`550 ${fill('a@', INBOUND_LIMIT)}`)}`)
    assert.equal(vast.kind, 'dsn')
    const block =
      'Final-Recipient: rfc822; a@dest.example\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 <a@dest.example>... x\n\n'
    const blocks = await classifyHostile(dsn('', fill(block, INBOUND_LIMIT)))
    assert.equal(blocks.recipients.length, 500)
    assert.ok(blocks.truncated && blocks.truncated.seen > 500)
    // A per-message Diagnostic-Code of 3 MiB that 100,000 recipient blocks all inherit.
    const shared = dsn(
      '',
      `Diagnostic-Code: smtp; 550 ${fill('client host ', 3 * MIB)}\n\n${fill('Final-Recipient: rfc822; a@dest.example\nAction: failed\n\n', 100 * 1024)}`,
    )
    await classifyHostile(shared)
  },

  'classifies SES notifications of a MiB: recipients without end, nesting, an SNS Message of a MiB': async () => {
    const head = 'From: no-reply@sns.example.amazonaws.com\nSubject: AWS Notification Message\n\n'
    const many = `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[${'{"emailAddress":"a@dest.example"},'.repeat(30_000)}{}]}}`
    const c = await classifyHostile(head + many)
    assert.equal(c.kind, 'dsn')
    assert.equal(c.recipients.length, 500)
    assert.ok(c.truncated && c.truncated.seen > 500)
    await classifyHostile(`${head}{"a":${fill('[', MIB)}`)
    await classifyHostile(`${head}${JSON.stringify({ Type: 'Notification', Message: many })}`)
  },

  'classifies a transcript of 4 MiB: RCPT TO lines and replies without end': async () => {
    await classifyHostile(BOUNCE_HEAD + fill('>>> RCPT To:<a@dest.example>\n<<< 550 5.1.1 no\n', 4 * MIB))
    await classifyHostile(`${BOUNCE_HEAD}>>> RCPT To:<a@dest.example>\n${fill('<<< 550 5.1.1 no\n', 4 * MIB)}`)
    await classifyHostile(
      dsn('', `Final-Recipient: rfc822; a@dest.example\nAction: failed\n\n`) + fill('>>> RCPT To:<', 4 * MIB),
    )
  },

  'classifies header fields of megabytes without an address': async () => {
    await classifyHostile(`From: ${fill('a', 3 * MIB)}\nSubject: Mail delivery failed\n\nfailed\n`)
    await classifyHostile(
      `From: MAILER-DAEMON@mx.example.net\nSubject: Mail delivery failed\nX-Failed-Recipients: ${fill('a@dest.example,', 3 * MIB)}\n\nfailed\n`,
    )
  },
}

// Run as a worker: one case, named by the test, reporting how it ended.
if (!isMainThread && workerData?.case) {
  const run = CASES[workerData.case as string]
  Promise.resolve()
    .then(() => run!())
    .then(
      () => parentPort!.postMessage({ ok: true }),
      (err: Error) => parentPort!.postMessage({ ok: false, error: err?.stack ?? String(err) }),
    )
}
