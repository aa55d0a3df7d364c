import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkRecipient, isSameOrSubdomain, singleMailbox } from '../src/message/addresses.ts'
import { fieldValue, MessageFormatError, parseMessage } from '../src/message/headers.ts'
import { HeaderPolicyError, prepareMessage } from '../src/message/rewrite.ts'

const sender = { memberId: 7, did: 'did:plc:abc', domain: 'member.example', poolId: 'atmospool' }

describe('header parsing', () => {
  it('keeps folded fields whole and the body byte for byte', () => {
    const body = Buffer.from('line 1\r\n\r\n  indented\r\n\xff raw byte\r\n', 'latin1')
    const msg = Buffer.concat([Buffer.from('Subject: a\r\n long\r\n\tsubject\r\nFrom: a@member.example\r\n\r\n'), body])
    const parsed = parseMessage(msg)
    assert.deepEqual(
      parsed.fields.map((f) => f.name),
      ['Subject', 'From'],
    )
    assert.equal(fieldValue(parsed.fields[0]!), 'a long\tsubject')
    assert.ok(parsed.body.equals(body))
    assert.equal(parsed.eol, '\r\n')
  })

  it('takes a message without a body, and refuses a header line that is no field', () => {
    assert.equal(parseMessage(Buffer.from('From: a@b.example\r\n')).fields.length, 1)
    assert.throws(() => parseMessage(Buffer.from('From: a@b.example\r\nnot a header\r\n\r\nbody')), MessageFormatError)
    assert.throws(() => parseMessage(Buffer.from(' continuation first\r\n\r\n')), MessageFormatError)
  })
})

describe('rewriting', () => {
  const raw = (headers: string) => Buffer.from(`${headers}\r\n\r\nbody\r\n`)

  it('keeps a member Message-ID and Date, drops Bcc and our own headers, adds ours on top', () => {
    const p = prepareMessage(
      parseMessage(
        raw(
          'From: a@member.example\r\nBcc: x@y.example\r\nMessage-ID: <m1@member.example>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nfeedback-id: x\r\nRETURN-PATH: <a@b>',
        ),
      ),
      sender,
    )
    assert.equal(p.messageIdHeader, '<m1@member.example>')
    const out = p.forRecipient('tok.123').toString()
    assert.equal(
      out,
      'Feedback-ID: tx:m7:atmos:atmospool\r\nX-Atmos-Member-Did: did:plc:abc\r\nX-Atmos-Ref: tok.123\r\n' +
        'From: a@member.example\r\nMessage-ID: <m1@member.example>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\nbody\r\n',
    )
  })

  it('refuses a From outside the domain, several From fields or mailboxes, and groups', () => {
    const refuse = (headers: string, pattern: RegExp) =>
      assert.throws(
        () => prepareMessage(parseMessage(raw(headers)), sender),
        (err: Error) => err instanceof HeaderPolicyError && pattern.test(err.message),
      )
    refuse('From: a@other.example', /^5\.7\.1 From must be an address at member\.example/)
    refuse('From: "a@member.example" <a@other.example>', /^5\.7\.1 /)
    refuse('From: a@member.example\r\nFrom: b@member.example', /^5\.6\.0 .*found 2/)
    refuse('Subject: none', /^5\.6\.0 .*found 0/)
    refuse('From: team: a@member.example, b@member.example;', /^5\.6\.0 /)
    refuse('From: a@member.example.evil.example', /^5\.7\.1 /)
  })

  it('recognizes subdomains and only subdomains', () => {
    assert.ok(isSameOrSubdomain('member.example', 'member.example'))
    assert.ok(isSameOrSubdomain('a.b.member.example', 'member.example'))
    assert.ok(!isSameOrSubdomain('evilmember.example', 'member.example'))
    assert.equal(singleMailbox('Ann <ann@member.example>'), 'ann@member.example')
    assert.equal(singleMailbox('ann@member.example, bob@member.example'), null)
  })
})

describe('recipient syntax', () => {
  it('accepts dot-atoms at host names and refuses routing forms', () => {
    assert.deepEqual(checkRecipient('Jo.Doe+tag@Dest.Example'), {
      ok: true,
      address: 'Jo.Doe+tag@dest.example',
      domain: 'dest.example',
    })
    assert.equal(checkRecipient('jörg@dest.example').ok, true)
    for (const bad of [
      'user%victim.example@relay.example',
      'host!user@relay.example',
      '"quoted"@dest.example',
      'a..b@dest.example',
      'user@[127.0.0.1]',
      'user@localhost',
      'user@-bad.example',
      '@dest.example',
    ]) {
      assert.equal(checkRecipient(bad).ok, false, bad)
    }
  })
})
