import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { classifyMessage, diagnose, messageToken, type VerpConfig, verpAddress } from '../src/index.ts'
import { rcptReplies } from '../src/plain/dialogue.ts'
import { reasonFromExchangeStatus } from '../src/reason/exchange.ts'
import { parseSesNotification, reasonFromSubType } from '../src/ses/notification.ts'

// Report shapes unlike the shared corpus's, each from a fixture written by hand after the
// document its Comments field names (test/fixtures): one rule, one test.

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url))
const classify = (name: string) => classifyMessage(fixture(name))

describe('Amazon SES notifications', () => {
  it('reads a bounce inside an SNS envelope (Message a JSON string), with its headers for attribution', async () => {
    const c = await classify('ses-bounce-sns.eml')
    assert.equal(c.kind, 'dsn')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.action, r.status, r.replyCode, r.reason, r.hard]),
      [
        ['kim@dest.example', 'failed', '5.1.1', '550', 'userunknown', true],
        // A value that is no address is reported as not named, never as an address.
        ['', 'failed', '5.1.1', '', 'userunknown', true],
      ],
    )
    assert.equal(c.recipients[0]!.remoteMta, 'a1-1.smtp-out.example.amazonses.com')
    assert.deepEqual(c.returnedHeaders?.['x-atmos-ref'], ['not-a-valid-token'])
  })

  it('reads a transient bounce as soft, its subtype (MailboxFull) giving the reason', async () => {
    const c = await classify('ses-bounce-transient.eml')
    assert.equal(c.kind, 'dsn')
    const r = c.recipients[0]!
    assert.deepEqual([r.address, r.action, r.reason, r.hard], ['lee@dest.example', 'failed', 'mailboxfull', false])
  })

  it('reads a published event (eventType) whose permanent NoEmail subtype alone says the address is unknown', async () => {
    const c = await classify('ses-bounce-noemail.eml')
    const r = c.recipients[0]!
    assert.deepEqual([r.address, r.reason, r.hard], ['max@dest.example', 'userunknown', true])
  })

  it('reads a complaint as a feedback report with its feedback type, user agent and original sender', async () => {
    const c = await classify('ses-complaint.eml')
    assert.equal(c.kind, 'arf')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.reason, r.hard]),
      [['kim@dest.example', 'feedback', false]],
    )
    assert.equal(c.feedback?.feedbackType, 'abuse')
    assert.equal(c.feedback?.userAgent, 'ExampleFeedbackLoop/1.0')
    assert.equal(c.feedback?.originalMailFrom, 'bounces@pool.example.org')
    assert.deepEqual(c.returnedHeaders?.to, ['kim@dest.example'])
  })

  it('reads a complaint notice for a send SES suppressed (complaintSubType) as no new complaint', async () => {
    const raw = fixture('ses-complaint.eml')
      .toString('utf8')
      .replace('"complaintFeedbackType": "abuse",', '"complaintSubType": "OnAccountSuppressionList",')
    const c = await classifyMessage(raw)
    assert.equal(c.kind, 'dsn')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.action, r.reason, r.hard]),
      [['kim@dest.example', 'failed', 'suppressed', false]],
    )
  })

  it("attributes a notification by its original's envelope sender (VERP) and reference header", async () => {
    const verp: VerpConfig = { secret: 'test-secret-1', bounceDomain: 'bounces.pool.example.org', prefix: 'b' }
    const id = '0192f1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b'
    const raw = fixture('ses-complaint.eml')
      .toString('utf8')
      .replace('"source": "bounces@pool.example.org"', `"source": "${verpAddress(verp, id)}"`)
      .replace('"value": "not-a-valid-token"', `"value": "${messageToken(verp, id)}"`)
    const c = await classifyMessage(raw, { verp })
    assert.deepEqual(
      c.attribution.filter((h) => h.verified).map((h) => [h.kind, h.source, h.verified && h.messageId]),
      [
        ['reference', 'returned-headers', id],
        ['verp', 'original-mail-from', id],
      ],
    )
  })

  it('reads a delivery notification as no bounce', async () => {
    // The delivery object of "Amazon SES notification contents".
    const delivery = {
      notificationType: 'Delivery',
      mail: { source: 'bounces@pool.example.org', destination: ['lee@dest.example'] },
      delivery: {
        timestamp: '2026-12-06T10:00:00.000Z',
        recipients: ['lee@dest.example'],
        smtpResponse: '250 2.6.0 Message received',
        reportingMTA: 'a1-1.smtp-out.example.amazonses.com',
      },
    }
    const raw = `From: no-reply@sns.example.amazonaws.com\nSubject: Amazon SES Email Event Notification\n\n${JSON.stringify(delivery)}\n`
    const c = await classifyMessage(raw)
    assert.equal(c.kind, 'dsn')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.action, r.reason, r.hard]),
      [['lee@dest.example', 'delivered', 'delivered', false]],
    )
  })

  it('takes only an object of the documented shape', () => {
    assert.equal(parseSesNotification('{"notificationType": "Bounce"}'), undefined)
    assert.equal(parseSesNotification('{"notificationType": "Bounce", "bounce": []}'), undefined)
    assert.equal(parseSesNotification('{"Type": "Notification", "Message": {"notificationType": "Bounce"}}'), undefined)
    assert.equal(parseSesNotification('{"notificationType": "Bounce", "bounce": {'), undefined)
    assert.equal(parseSesNotification('[{"notificationType": "Bounce", "bounce": {}}]'), undefined)
    const odd = parseSesNotification(
      '{"notificationType": "Bounce", "bounce": {"bouncedRecipients": [7, {"emailAddress": ["a@b.example"]}, {"emailAddress": "a@b.example\\u0000"}]}}',
    )
    assert.deepEqual(
      odd?.recipients.map((r) => r.address),
      ['', '', ''],
    )
  })

  it('maps the documented bounce subtypes', () => {
    assert.equal(reasonFromSubType('NoEmail'), 'userunknown')
    assert.equal(reasonFromSubType('Suppressed'), 'suppressed')
    assert.equal(reasonFromSubType('OnAccountSuppressionList'), 'suppressed')
    assert.equal(reasonFromSubType('MailboxFull'), 'mailboxfull')
    assert.equal(reasonFromSubType('MessageTooLarge'), 'mesgtoobig')
    assert.equal(reasonFromSubType('ContentRejected'), 'contenterror')
    assert.equal(reasonFromSubType('General'), '')
  })
})

describe("Microsoft's enhanced status codes", () => {
  it('reads 5.4.310 (DNS domain does not exist) as an unknown host, hard', async () => {
    const r = (await classify('exchange-5.4.310.eml')).recipients[0]!
    assert.deepEqual([r.status, r.reason, r.hard], ['5.4.310', 'hostunknown', true])
  })

  it('reads 5.1.351 (directory lookup failed) as an unknown user, hard', async () => {
    const r = (await classify('exchange-5.1.351.eml')).recipients[0]!
    assert.deepEqual([r.status, r.reason, r.hard], ['5.1.351', 'userunknown', true])
  })

  it('lets the words about the address win over a code-specific rule (5.4.300, expired)', async () => {
    const r = (await classify('exchange-words-win.eml')).recipients[0]!
    assert.deepEqual([r.status, r.reason], ['5.4.300', 'userunknown'])
    // Without words, the code's own meaning.
    assert.equal(diagnose({ statusField: '5.4.300', texts: [], action: 'failed' }).reason, 'expired')
    assert.equal(diagnose({ statusField: '4.4.310', texts: [], action: 'delayed' }).hard, false)
  })

  it('knows the documented codes and ranges, and nothing else', () => {
    assert.equal(reasonFromExchangeStatus('5.7.509'), 'authfailure')
    assert.equal(reasonFromExchangeStatus('5.7.606'), 'blocked')
    assert.equal(reasonFromExchangeStatus('5.7.705'), 'blocked')
    assert.equal(reasonFromExchangeStatus('5.4.316'), 'expired')
    assert.equal(reasonFromExchangeStatus('4.4.312'), 'networkerror')
    assert.equal(reasonFromExchangeStatus('5.7.1'), '')
    assert.equal(reasonFromExchangeStatus('5.4.310 '), '')
  })
})

describe('reasons only in the SMTP dialogue', () => {
  it('gives each DSN recipient the reply to its own RCPT TO, not the next one', async () => {
    const c = await classify('transcript-two.eml')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.status, r.replyCode, r.reason, r.hard]),
      [
        ['kim@dest.example', '5.7.1', '550', 'norelaying', false],
        ['lee@dest.example', '5.1.1', '550', 'userunknown', true],
        ['max@dest.example', '4.2.2', '452', 'mailboxfull', false],
      ],
    )
  })

  it('gives each recipient of a plain bounce the reply to its own RCPT TO', async () => {
    const c = await classify('transcript-plain-two.eml')
    assert.equal(c.kind, 'plain_bounce')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.status, r.replyCode, r.reason, r.hard]),
      [
        ['kim@dest.example', '5.7.1', '554', 'norelaying', false],
        ['lee@dest.example', '5.1.1', '550', 'userunknown', true],
      ],
    )
  })

  it('reads a single recipient from the dialogue alone, in a DSN and in a plain bounce', async () => {
    const dsn = (await classify('transcript-dsn.eml')).recipients[0]!
    assert.deepEqual([dsn.status, dsn.replyCode, dsn.reason], ['5.7.1', '554', 'blocked'])
    const plain = (await classify('transcript-plain.eml')).recipients[0]!
    assert.deepEqual([plain.status, plain.replyCode, plain.reason, plain.hard], ['5.1.1', '550', 'userunknown', true])
  })

  it('takes only refusals, joined over their lines, for valid addresses', () => {
    const replies = rcptReplies(
      [
        '>>> RCPT To:<ok@dest.example>',
        '<<< 250 2.1.5 Ok',
        '>>> RCPT TO:<Kim@Dest.Example> NOTIFY=FAILURE',
        '<<< 550-5.1.1 The account does not',
        '<<< 550 5.1.1 exist',
        '>>> RCPT To:<not an address>',
        '<<< 550 5.1.1 no',
        '>>> RCPT To:<lee@dest.example>',
      ].join('\n'),
    )
    assert.deepEqual([...replies], [['kim@dest.example', '550-5.1.1 The account does not\n550 5.1.1 exist']])
  })
})

describe('reports forwarded as message/rfc822', () => {
  it('reads the DSN fields inside an attached message/rfc822', async () => {
    const c = await classify('dsn-forwarded.eml')
    assert.equal(c.kind, 'dsn')
    assert.ok(c.notes.includes('report read from an attached message/rfc822 part'))
    const r = c.recipients[0]!
    assert.deepEqual([r.address, r.status, r.reason, r.hard], ['kim@dest.example', '5.1.1', 'userunknown', true])
    // The returned headers are the bounced message's, not the forwarded report's.
    assert.deepEqual(c.returnedHeaders?.['x-atmos-ref'], ['not-a-valid-token'])
  })

  it('reads a feedback report inside an attached message/rfc822', async () => {
    const c = await classify('arf-forwarded.eml')
    assert.equal(c.kind, 'arf')
    assert.equal(c.feedback?.originalMailFrom, 'bounces@pool.example.org')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.reason]),
      [['kim@isp.example', 'feedback']],
    )
  })

  it('reads them when the message/rfc822 part is inline too', async () => {
    const c = await classify('dsn-forwarded-inline.eml')
    assert.equal(c.kind, 'dsn')
    assert.equal(c.recipients[0]!.address, 'kim@dest.example')
  })
})

describe('complaints as a plain multipart with only the original attached', () => {
  it('reads an abuse report with the original attached as a complaint about its recipient', async () => {
    const c = await classify('arf-plain-multipart.eml')
    assert.equal(c.kind, 'arf')
    assert.equal(c.feedback?.feedbackType, 'abuse')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.reason, r.hard]),
      [['kim@isp.example', 'feedback', false]],
    )
    assert.deepEqual(c.returnedHeaders?.['x-atmos-ref'], ['not-a-valid-token'])
  })

  it('leaves a forwarded message without words of a complaint to the operator', async () => {
    assert.equal((await classify('plain-forward.eml')).kind, 'other')
    // A person's grievance is mail for the operator, not a feedback loop's report.
    const grievance = fixture('plain-forward.eml')
      .toString('utf8')
      .replace('Have a look at the message below', 'I have a complaint about the message below')
    assert.equal((await classifyMessage(grievance)).kind, 'other')
  })
})

describe('delivered and relayed DSN actions', () => {
  it('reads Action: delivered as no bounce', async () => {
    const r = (await classify('dsn-delivered.eml')).recipients[0]!
    assert.deepEqual([r.action, r.status, r.reason, r.hard], ['delivered', '2.0.0', 'delivered', false])
  })

  it('reads Action: relayed as no bounce, whatever reply it quotes', async () => {
    const r = (await classify('dsn-relayed.eml')).recipients[0]!
    assert.deepEqual([r.action, r.status, r.replyCode, r.reason, r.hard], ['relayed', '2.0.0', '', 'delivered', false])
  })
})

describe('Apple Mail unsubscribe requests', () => {
  const request = (subject: string, body: string, extra = '') =>
    Buffer.from(
      `From: Kim <kim@dest.example>\r\nTo: b+token@bounces.pool.example\r\nSubject: ${subject}\r\n${extra}` +
        `Date: Sun, 6 Dec 2026 10:00:00 +0000\r\nMessage-ID: <u1@dest.example>\r\nContent-Type: text/plain\r\n\r\n${body}\r\n`,
    )

  it('reads the wording Apple Mail and iOS Mail send with an empty Subject as an opt-out of the sender', async () => {
    for (const agent of ['Apple Mail', 'iOS Mail']) {
      const c = await classifyMessage(
        request('', `${agent} sent this email to unsubscribe from the message "Your weekly digest".`),
      )
      assert.equal(c.kind, 'arf', agent)
      assert.equal(c.feedback?.feedbackType, 'opt-out')
      assert.deepEqual(
        c.recipients.map((r) => r.address),
        ['kim@dest.example'],
      )
    }
  })

  it('leaves the same words under a Subject, or quoted in a letter, to the operator', async () => {
    const subject = await classifyMessage(
      request('Re: digest', 'Apple Mail sent this email to unsubscribe from the message "x".'),
    )
    assert.notEqual(subject.feedback?.feedbackType, 'opt-out')
    const quoted = await classifyMessage(
      request('', 'Hello, my phone said: Apple Mail sent this email to unsubscribe from the message "x".'),
    )
    assert.notEqual(quoted.feedback?.feedbackType, 'opt-out')
  })
})
