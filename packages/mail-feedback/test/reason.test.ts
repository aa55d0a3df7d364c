import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { bestStatus, classifyMessage, diagnose, replyCodeIn } from '../src/index.ts'
import { plainRecipients } from '../src/plain/recipients.ts'
import { reasonFromStatus, reasonFromText } from '../src/reason/rules.ts'

// Each rule the bounce corpus taught, on a minimal made-up example, so that it holds
// whatever becomes of the corpus.

function dsn(fields: { status: string; diagnostic?: string; action?: string }, notification = ''): string {
  return [
    'From: MAILER-DAEMON@mx.example.net',
    'To: sender@example.org',
    'Subject: Delivery Status Notification',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    notification || 'Your message could not be delivered.',
    '',
    '--b',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.net',
    '',
    'Final-Recipient: rfc822; kim@example.com',
    `Action: ${fields.action ?? 'failed'}`,
    `Status: ${fields.status}`,
    ...(fields.diagnostic ? [`Diagnostic-Code: ${fields.diagnostic}`] : []),
    '',
    '--b--',
    '',
  ].join('\n')
}

async function first(raw: string) {
  const c = await classifyMessage(raw)
  const r = c.recipients[0]
  assert.ok(r, `no recipient (${c.kind})`)
  return r
}

describe('reason wordings', () => {
  it('reads each MTA wording as its class', () => {
    const cases: [string, string][] = [
      [
        '421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints',
        'badreputation',
      ],
      [
        'Connected to 192.0.2.1 but sender was rejected. 421 4.7.0 deferred due to unexpected volume or user complaints',
        'badreputation',
      ],
      ['552 5.6.0 Headers too large (32000 max)', 'contenterror'],
      ['550 5.7.1 Messages with multiple addresses in From: header are not accepted', 'notcompliantrfc'],
      ['552 5.7.0 This message was blocked because its content presents a potential security issue', 'policyviolation'],
      ['554 Mail from a@example.org rejected for policy reasons', 'policyviolation'],
      ['550 Connection frequency limited. Blocked IP 192.0.2.1', 'toomanyconn'],
      ['Recipient address rejected: User a@example.com temporary locked. Please try again later', 'suspend'],
      ['User mailbox exceeds allowed size: a@example.com', 'mailboxfull'],
      ['501 RCPT TO not accepted: 5.7.1 This system is not configured to relay mail', 'norelaying'],
      ['550 Insecure Mail Relay', 'norelaying'],
      ['550 domain [example.com] mismatches client ip 192.0.2.1', 'requireptr'],
      ["550 SC-004 Unfortunately, messages from 192.0.2.1 weren't sent.", 'blocked'],
      ['501 <a@example.org>... no access from mail server [192.0.2.1] which is an open relay', 'blocked'],
      ['Host not reachable. Message will be retried for 4 more day(s)', 'expired'],
      ['Deferred: 421 Warning: message still undelivered after 4 hours', 'expired'],
      ["You're sending this from a different address using the 'Send mail as' feature", 'rejected'],
      ['Duplicated Message-ID in <list@example.org>.', 'systemerror'],
      ['Reason: Illegal host/domain name found', 'hostunknown'],
      ['551 not our user', 'hasmoved'],
      ['551 5.1.6 User not local; please try <a@example.net>', 'hasmoved'],
      ['If you have questions, visit https://groups.google.com/support/ (any language)', 'rejected'],
    ]
    for (const [text, reason] of cases) assert.equal(reasonFromText(text), reason, text)
  })

  it('reads a phrase that a multi-line reply splits with its codes', () => {
    assert.equal(
      reasonFromText('552-5.7.0 blocked because its content presents a potential\n552-5.7.0 security issue.'),
      'policyviolation',
    )
  })

  it('takes X.4.4 (unable to route) for a domain that accepts no mail', () => {
    assert.equal(reasonFromStatus('5.4.4'), 'notaccept')
  })
})

describe('reply and status codes', () => {
  it('ignores three-digit numbers SMTP does not define', () => {
    assert.equal(replyCodeIn('522 5.2.0 Delivery failed: Over quota'), '')
    assert.equal(replyCodeIn('426 connection timed out'), '')
    assert.equal(replyCodeIn('421 4.4.2 Connection timed out'), '421')
  })

  it('prefers the last attempt’s code to an X.4.7 expiry', () => {
    const text = '554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.2 Connection timed out>'
    assert.equal(bestStatus('4.4.7', [text]), '4.4.2')
  })

  it('keeps a specific Status against an equally specific code in the transcript', () => {
    assert.equal(bestStatus('5.1.6', ['551 not our user'], ['550 5.1.1 <a@example.net>... User unknown']), '5.1.6')
    assert.equal(bestStatus('5.0.0', ['551 not our user'], ['550 5.1.1 <a@example.net>... User unknown']), '5.1.1')
  })
})

describe('diagnosis rules', () => {
  it('believes "user unknown" after DATA when the words name the directory itself', () => {
    const yahoo = diagnose({
      statusField: '5.0.0',
      texts: ["554 delivery error: dd This user doesn't have a example.com account (a@example.com) [0]"],
      context: ['>>> DATA'],
    })
    assert.deepEqual([yahoo.reason, yahoo.hard], ['userunknown', true])
    const imail = diagnose({
      texts: ['a@example.com'],
      context: ['Unknown user: a@example.com'],
      lead: 'Unknown user: ',
    })
    assert.deepEqual([imail.reason, imail.hard], ['userunknown', true])
  })

  it("does not take Gmail's hedged 'couldn't be found, or is unable to receive mail' as proof", () => {
    const d = diagnose({
      statusField: '5.0.0',
      texts: ['550 : User unknown'],
      context: [
        "** Address not found ** Your message wasn't delivered because the address couldn't be found, or is unable to receive mail.",
      ],
    })
    assert.deepEqual([d.reason, d.hard], ['filtered', false])
    const plain = diagnose({
      statusField: '5.0.0',
      texts: [''],
      context: [
        "** Address not found ** Your message wasn't delivered because the address couldn't be found. Check for typos.",
      ],
    })
    assert.deepEqual([plain.reason, plain.hard], ['userunknown', true])
  })

  it('reads an unknown host said with a temporary code as a failed lookup', () => {
    const d = diagnose({ statusField: '4.0.0', texts: ['DNS Error: NXDOMAIN Domain name not found: example.invalid'] })
    assert.deepEqual([d.reason, d.hard], ['networkerror', false])
  })

  it('calls a message-length refusal under X.2.3 the recipient’s limit', () => {
    assert.equal(
      diagnose({ statusField: '5.2.3', texts: ['550 5.2.3 message too large for this recipient'] }).reason,
      'exceedlimit',
    )
    assert.equal(diagnose({ statusField: '5.3.4', texts: ['552 5.3.4 message too large'] }).reason, 'mesgtoobig')
  })

  it('blames the local mailer for an x-unix failure that says nothing more', () => {
    const d = diagnose({
      statusField: '4.3.0',
      texts: ['temporary failure'],
      diagnosticType: 'x-unix',
      action: 'failed',
    })
    assert.equal(d.reason, 'mailererror')
    const full = diagnose({ statusField: '5.3.0', texts: ['maildir over quota'], diagnosticType: 'x-unix' })
    assert.equal(full.reason, 'mailboxfull')
  })

  it('calls a message given up on after timeouts expired, and a bare delay notice too', () => {
    for (const action of ['failed', 'expired']) {
      assert.equal(
        diagnose({
          statusField: '4.4.1',
          texts: ['connect to mx.example.com[192.0.2.1]:25: Connection timed out'],
          action,
        }).reason,
        'expired',
        action,
      )
    }
    assert.equal(diagnose({ statusField: '', texts: ['Connection timed out'], action: 'expired' }).reason, 'expired')
    assert.equal(diagnose({ statusField: '4.4.0', texts: [''], action: 'delayed' }).reason, 'expired')
    // Still retrying: the timeout is the news, nothing has expired yet.
    assert.equal(
      diagnose({ statusField: '4.4.1', texts: ['connect to mx.example.com: Connection timed out'], action: 'delayed' })
        .reason,
      'networkerror',
    )
    // A refusal that is not a timeout keeps its class.
    assert.equal(
      diagnose({
        statusField: '4.4.1',
        texts: ["Sorry, I wasn't able to establish an SMTP connection."],
        action: 'failed',
      }).reason,
      'networkerror',
    )
  })
})

describe('report structure', () => {
  it("completes sendmail's one-line Diagnostic-Code from the transcript", async () => {
    const raw = dsn(
      {
        status: '5.7.0',
        diagnostic: 'SMTP; 552-5.7.0 This message was blocked because its content presents a potential',
      },
      [
        '... while talking to mx.example.com.:',
        '>>> DATA',
        '<<< 552-5.7.0 This message was blocked because its content presents a potential',
        '<<< 552-5.7.0 security issue. Please review our',
        '<<< 552 5.7.0 content guidelines.',
      ].join('\n'),
    )
    const r = await first(raw)
    assert.equal(r.reason, 'policyviolation')
    assert.match(r.diagnostic, /security issue\. Please review our content guidelines\.$/)
  })

  it("reads the Status field's gloss as the reporting MTA's words", async () => {
    const r = await first(dsn({ status: '5.4.4 (Illegal host/domain name found)' }))
    assert.deepEqual([r.status, r.reason, r.hard], ['5.4.4', 'hostunknown', true])
  })

  it('keeps the Diagnostic-Code type and reads x-unix as the local mailer', async () => {
    const r = await first(dsn({ status: '4.3.0', diagnostic: 'x-unix; temporary failure' }))
    assert.equal(r.reason, 'mailererror')
  })

  it('reads a text part whose Content-Type lacks its ";" as the explanation', async () => {
    const raw = [
      'From: MAILER-DAEMON@mx.example.net',
      'To: sender@example.org',
      'Subject: Returned Mail: User unknown',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"',
      '',
      '--b',
      'Content-Type: text/plain',
      '   charset="us-ascii"',
      '',
      '---The following addresses had delivery errors---',
      '',
      'kim@example.com [User unknown]',
      '',
      '--b',
      'From: sender@example.org',
      'To: kim@example.com',
      'Subject: hello',
      '',
      'hello',
      '--b--',
      '',
    ].join('\n')
    const r = await first(raw)
    assert.deepEqual([r.address, r.reason], ['kim@example.com', 'filtered'])
  })
})

describe('plain-text recipients', () => {
  it('gives each address the SMTP dialogue written above its line', () => {
    const text = [
      '   ----- Transcript of session follows -----',
      'While talking to mx.example.edu:',
      '>>> MAIL From:<sender@example.org>',
      '<<< 550 Insecure Mail Relay',
      '554 <kim@example.edu>... Remote protocol error',
      '421 example.edu (smtp)... Deferred: Connection timed out',
    ].join('\n')
    const [r] = plainRecipients(text, new Set(['sender@example.org'])).recipients
    assert.equal(r?.address, 'kim@example.edu')
    assert.match(r?.session ?? '', /<<< 550 Insecure Mail Relay/)
    const d = diagnose({ texts: [r!.session, r!.snippet], lead: `${r!.session}\n${r!.lead}` })
    assert.deepEqual([d.reason, d.replyCode, d.hard], ['norelaying', '550', false])
  })

  it('never takes an address given as the one to write to for a recipient, even where it reappears', () => {
    const text = [
      'For further assistance, please contact <support@example.net>',
      '',
      'If that does not help, <support@example.net>',
      'is the address to write to.',
      '',
      '<kim@example.com>: host mx.example.com said: 550 5.1.1 <kim@example.com>: User unknown',
    ].join('\n')
    assert.deepEqual(
      plainRecipients(text, new Set()).recipients.map((r) => r.address),
      ['kim@example.com'],
    )
  })
})
