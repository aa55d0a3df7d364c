import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { classifyReply } from '../src/index.ts'

// What the relay's delivery worker does with each remote reply.

describe('classifyReply', () => {
  it('delivers on 2xx', () => {
    assert.deepEqual(classifyReply({ code: 250, text: 'ok' }), {
      outcome: 'delivered',
      reason: 'delivered',
      hard: false,
    })
  })

  it('fails hard only when the address itself is bad', () => {
    const cases: [number, string, string, string][] = [
      [550, '5.1.1', 'The email account that you tried to reach does not exist', 'userunknown'],
      [
        550,
        '',
        'Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)',
        'userunknown',
      ],
      [550, '5.1.2', 'Host or domain name not found', 'hostunknown'],
      [551, '5.1.6', 'User has moved; please try <new@example.org>', 'hasmoved'],
      [556, '5.1.10', 'Recipient address has null MX', 'notaccept'],
    ]
    for (const [code, enhanced, text, reason] of cases) {
      assert.deepEqual(classifyReply({ code, enhanced, text }), { outcome: 'failed', reason, hard: true }, text)
    }
  })

  it('keeps policy, spam and full-mailbox refusals soft: they say nothing bad about the address', () => {
    const cases: [number, string, string, string][] = [
      [554, '5.7.1', 'Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org', 'blocked'],
      [550, '5.7.1', 'Message rejected as spam by Content Filtering', 'spamdetected'],
      [552, '5.2.2', 'Mailbox full', 'mailboxfull'],
      [
        550,
        '5.7.26',
        'Unauthenticated email from example.com is not accepted due to domain DMARC policy',
        'authfailure',
      ],
      [554, '5.7.1', 'Relay access denied', 'norelaying'],
      [550, '5.7.1', 'IP address blacklisted by recipient', 'blocked'],
    ]
    for (const [code, enhanced, text, reason] of cases) {
      assert.deepEqual(classifyReply({ code, enhanced, text }), { outcome: 'failed', reason, hard: false }, text)
    }
  })

  it('defers on 4xx, and on a 5xx that asks to be tried again (greylisting)', () => {
    assert.deepEqual(classifyReply({ code: 452, enhanced: '4.2.2', text: 'Mailbox full' }), {
      outcome: 'deferred',
      reason: 'mailboxfull',
      hard: false,
    })
    const grey = classifyReply({ code: 550, text: 'Greylisted, please try again later' })
    assert.equal(grey.outcome, 'deferred')
    assert.equal(grey.hard, false)
    const unknown4xx = classifyReply({ code: 450, enhanced: '4.1.1', text: 'User unknown (directory out of sync)' })
    assert.equal(unknown4xx.outcome, 'deferred')
    assert.equal(unknown4xx.hard, false)
  })

  it('takes the enhanced code over the reply code when the reply is vague', () => {
    assert.deepEqual(classifyReply({ code: 550, enhanced: '5.1.1', text: 'Requested action not taken' }), {
      outcome: 'failed',
      reason: 'userunknown',
      hard: true,
    })
  })

  it('treats a garbled reply as a deferral, never as a hard failure', () => {
    for (const code of [0, Number.NaN, 999, 354]) {
      const r = classifyReply({ code, enhanced: 'x.y.z', text: 'user unknown' })
      assert.equal(r.outcome, 'deferred')
      assert.equal(r.hard, false)
    }
  })
})
