import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addressDomain, checkRecipient, isSameOrSubdomain } from '../src/message/addresses.ts'
import { fieldValue, MessageFormatError, parseMessage } from '../src/message/headers.ts'
import { canonicalBody, LineCheck } from '../src/message/lines.ts'
import { checkMailbox } from '../src/message/mailbox.ts'
import { receivedField } from '../src/message/received.ts'
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
    refuse(
      'From: a@member.example\r\nSender: b@member.example\r\nSender: c@member.example',
      /^5\.6\.0 .*one Sender.*found 2/,
    )
    refuse('From: a@member.example\r\nResent-From: x@member.example x@other.example', /^5\.6\.0 the Resent-From header/)
    refuse('From: a@member.example\r\nResent-Sender: x@other.example', /^5\.7\.1 Resent-Sender must be/)
    refuse('From: a@member.example\r\nSender: "ceo@other.example" <s@member.example>', /^5\.7\.1 Sender shows/)
  })

  it('removes what a member may not supply, whatever the case or folding', () => {
    const p = prepareMessage(
      parseMessage(
        raw(
          [
            'From: a@member.example',
            'dkim-signature: v=1; a=rsa-sha256; d=member.example;\r\n b=forged',
            'ARC-Seal: i=1; cv=none',
            'arc-message-signature: i=1',
            'ARC-Authentication-Results: i=1; spf=pass',
            'Authentication-Results: mx.example;\r\n\tdkim=pass',
            'Received-SPF: pass',
            'Resent-Bcc: hidden@secret.example',
            'X-Atmos-Anything: 1',
            'x-atmos-ref: forged',
            'X-Mailer: kept',
          ].join('\r\n'),
        ),
      ),
      sender,
    )
    const fields = parseMessage(p.forRecipient('tok.1')).fields.map((f) => f.key)
    assert.deepEqual(fields, [
      'feedback-id',
      'x-atmos-member-did',
      'x-atmos-ref',
      'message-id',
      'date',
      'from',
      'x-mailer',
    ])
  })

  it('recognizes subdomains and only subdomains', () => {
    assert.ok(isSameOrSubdomain('member.example', 'member.example'))
    assert.ok(isSameOrSubdomain('a.b.member.example', 'member.example'))
    assert.ok(!isSameOrSubdomain('evilmember.example', 'member.example'))
    // A URL-host reading would cut these at `/`, `?`, `#` and `\\` and find member.example.
    for (const d of ['member.example/paypal.com', 'member.example?x', 'member.example#x', 'member.example\\x']) {
      assert.equal(addressDomain(`a@${d}`), '', d)
    }
  })
})

describe('line checks (bare CR, bare LF, 998 octets)', () => {
  const check = (chunks: string[]) => {
    const lines = new LineCheck()
    for (const c of chunks) lines.push(Buffer.from(c, 'latin1'))
    lines.end()
    return lines
  }

  it('passes CRLF lines of up to 998 octets, header and body, however the chunks fall', () => {
    const msg = `From: a@member.example\r\nSubject: ${'s'.repeat(989)}\r\n\r\n${'b'.repeat(998)}\r\nend\r\n`
    assert.equal(check([msg]).problem, undefined)
    // One byte at a time: a CRLF split over two chunks is still one line end.
    assert.equal(check([...msg]).problem, undefined)
  })

  it('refuses a bare CR or LF in the header section, naming the line and field', () => {
    assert.match(
      check(['From: a@member.example\r\nSubject: x\rFrom: ceo@other.example\r\n\r\nbody\r\n']).problem ?? '',
      /^line 2 of the message \(in the header section, field Subject\) holds a bare CR/,
    )
    assert.match(
      check(['Subject: x\r\r\nFrom: a@member.example\r\n\r\n']).problem ?? '',
      /^line 1 .*field Subject\) holds a bare CR/,
    )
    assert.match(
      check(['From: a@member.example\r\nX-A: 1\nX-B: 2\r\n\r\n']).problem ?? '',
      /^line 2 .*field X-A\) ends with a bare LF/,
    )
    assert.match(
      check(['From: a@member.example\r\nSubject: a\r\n folded\rFrom: x@other.example\r\n\r\n']).problem ?? '',
      /^line 3 of the message \(in the header section, folded line of field Subject\) holds a bare CR/,
    )
    // A message that ends on a CR.
    assert.match(check(['From: a@member.example\r\n\r\nbody\r']).problem ?? '', /^line 3 .*body.* bare CR/)
  })

  it('refuses a bare CR in the body and takes a bare LF there (made CRLF before signing)', () => {
    assert.match(
      check(['From: a@member.example\r\n\r\nok\r\nx\r.\r\n']).problem ?? '',
      /^line 4 of the message \(in the body\) holds a bare CR/,
    )
    // A CR at the end of one chunk is judged by the next one's first byte.
    assert.match(check(['From: a@member.example\r\n\r\nx\r', 'y\r\n']).problem ?? '', /^line 3 .*bare CR/)
    assert.equal(check(['From: a@member.example\r\n\r\nx\r', '\ny\r\n']).problem, undefined)
    const lf = check(['From: a@member.example\r\n\r\nunix\nlines\n'])
    assert.equal(lf.problem, undefined)
    assert.equal(lf.bodyHasBareLf, true)
    assert.equal(
      canonicalBody(Buffer.from('unix\nlines\r\nmixed\nend')).toString(),
      'unix\r\nlines\r\nmixed\r\nend\r\n',
    )
    const same = Buffer.from('a\r\nb\r\n')
    assert.equal(canonicalBody(same), same)
    assert.equal(canonicalBody(Buffer.alloc(0)).length, 0)
  })

  it('refuses a line over 998 octets in the header or the body', () => {
    assert.match(
      check([`From: a@member.example\r\nSubject: ${'s'.repeat(990)}\r\n\r\n`]).problem ?? '',
      /^line 2 .*field Subject\) is longer than 998 octets/,
    )
    assert.match(
      check(['From: a@member.example\r\n\r\n', 'x'.repeat(600), 'x'.repeat(600), '\r\n']).problem ?? '',
      /^line 3 of the message \(in the body\) is longer than 998 octets/,
    )
  })

  it('the parser itself refuses bare CR and LF in the header section', () => {
    assert.throws(
      () => parseMessage(Buffer.from('Subject: x\rFrom: ceo@other.example\r\nFrom: a@member.example\r\n\r\nb')),
      /header line 1 holds a bare CR/,
    )
    assert.throws(() => parseMessage(Buffer.from('From: a@member.example\nTo: b@x.example\r\n\r\nb')), /bare LF/)
  })
})

describe('strict mailbox (From, Sender, Resent-From, Resent-Sender)', () => {
  const ok = (value: string, address: string, displayName = '') =>
    assert.deepEqual(checkMailbox(value, 'From', 'member.example'), {
      ok: true,
      address,
      domain: address.split('@')[1],
      displayName,
    })
  const refused = (value: string, status: '5.6.0' | '5.7.1', pattern: RegExp) => {
    const r = checkMailbox(value, 'From', 'member.example')
    assert.equal(r.ok, false, value)
    if (!r.ok) {
      assert.equal(r.status, status, `${value}: ${r.reason}`)
      assert.match(r.reason, pattern, value)
    }
  }

  it('accepts one well-formed mailbox, in its usual forms', () => {
    ok('x@member.example', 'x@member.example')
    ok('  x@member.example  ', 'x@member.example')
    ok('X.Y+tag@Mail.Member.Example', 'X.Y+tag@mail.member.example')
    ok('Alice <alice@member.example>', 'alice@member.example', 'Alice')
    ok('John Q. Public <jq@member.example>', 'jq@member.example', 'John Q. Public')
    ok('"Smith, Jo (Billing)" <jo@member.example>', 'jo@member.example', 'Smith, Jo (Billing)')
    ok('"Say \\"hi\\"" <a@member.example>', 'a@member.example', 'Say "hi"')
    ok('<a@member.example>', 'a@member.example')
    ok('=?utf-8?q?J=C3=B6rg?= <j@member.example>', 'j@member.example', '=?utf-8?q?J=C3=B6rg?=')
    ok('Jörg <jörg@member.example>', 'jörg@member.example', 'Jörg')
    ok('a@member.example (Alice)', 'a@member.example')
    ok('(team) Alice (ops) <a@member.example> (sent by a bot)', 'a@member.example', 'Alice')
    ok('"alice@member.example" <alice@member.example>', 'alice@member.example', 'alice@member.example')
    const idn = checkMailbox('x@bücher.member.example', 'From', 'member.example')
    assert.ok(idn.ok && idn.domain === 'xn--bcher-kva.member.example')
  })

  it('refuses the ambiguous forms mainstream parsers read as another domain or as nothing', () => {
    refused('x@other.example <x@member.example>', '5.7.1', /shows the address x@other\.example/)
    refused('x@member.example x@other.example', '5.6.0', /text beside its address/)
    refused('<x@member.example> x@other.example', '5.6.0', /text after its address/)
    refused('x@other.example@member.example', '5.6.0', /more than one "@"/)
    refused('<x@other.example@member.example>', '5.6.0', /more than one "@"/)
    refused('x@member.example.', '5.6.0', /domain ending in a dot/)
    refused('"PayPal" <service@member.example/paypal.com>', '5.6.0', /not a host name/)
    refused('service@member.example/paypal.com', '5.6.0', /not a host name/)
  })

  it('refuses a display name or comment that is an address at another domain, encoded or not', () => {
    refused('"ceo@other.example" <x@member.example>', '5.7.1', /ceo@other\.example/)
    refused('=?utf-8?b?Y2VvQG90aGVyLmV4YW1wbGU=?= <x@member.example>', '5.7.1', /ceo@other\.example/)
    refused('"=?utf-8?q?ceo=40other=2Eexample?=" <x@member.example>', '5.7.1', /ceo@other\.example/)
    refused('"CEO ＜ceo＠other.example＞" <x@member.example>', '5.7.1', /ceo@other\.example/)
    refused('x@member.example (ceo@other.example)', '5.7.1', /ceo@other\.example/)
    refused('"ceo @ other.example" <x@member.example>', '5.7.1', /ceo@other\.example/)
    refused('"ceo\u200b@other\u200b.example" <x@member.example>', '5.7.1', /shows the address/)
    refused('=?utf-7?q?ceo+AEA-other.example?= <x@member.example>', '5.6.0', /unknown charset/)
  })

  it('refuses lists, groups, routes, literals, quoted local parts, comments inside the address', () => {
    refused('a@member.example, b@member.example', '5.6.0', /more than one address/)
    refused('A <a@member.example>, B <b@member.example>', '5.6.0', /more than one address/)
    refused('team: a@member.example;', '5.6.0', /group or a route/)
    refused('undisclosed-recipients:;', '5.6.0', /group or a route/)
    refused('<@relay.example:a@member.example>', '5.6.0', /source route/)
    refused('a@[192.0.2.1]', '5.6.0', /address literal/)
    refused('<a@[192.0.2.1]>', '5.6.0', /address literal/)
    refused('"a b"@member.example', '5.6.0', /.+/)
    refused('<"a@other.example"@member.example>', '5.6.0', /quoted local part/)
    refused('a(c)@member.example', '5.6.0', /misplaced "@"/)
    refused('<a(c)@member.example>', '5.6.0', /invalid local part/)
    refused('a..b@member.example', '5.6.0', /invalid local part/)
    refused('Alice <alice@member.example', '5.6.0', /without its ">"/)
    refused('', '5.6.0', /empty/)
    refused('Alice', '5.6.0', /.+/)
    refused('a@localhost', '5.6.0', /not a host name/)
    refused('a@-x.member.example', '5.6.0', /not a host name/)
    refused('a@member.example\u0000', '5.6.0', /control characters/)
    refused('a@other.example', '5.7.1', /must be an address at member\.example/)
    refused('a@evilmember.example', '5.7.1', /must be an address at member\.example/)
  })
})

describe('Received', () => {
  it('names the relay, ESMTPSA, the id, the one recipient and the date; the client only when asked', () => {
    const date = new Date('2026-12-06T19:00:00Z')
    const base = { by: 'relay.pool.example', protocol: 'ESMTPSA', id: 'abc', date }
    assert.equal(
      receivedField({ ...base, for: 'x@dest.example' }).raw.toString(),
      'Received: by relay.pool.example with ESMTPSA id abc\r\n\tfor <x@dest.example>;\r\n\tSun, 06 Dec 2026 19:00:00 +0000',
    )
    assert.equal(
      receivedField({ ...base, client: { helo: 'laptop.member.example', address: '::ffff:192.0.2.7' } }).raw.toString(),
      'Received: from laptop.member.example ([192.0.2.7])\r\n\tby relay.pool.example with ESMTPSA id abc;\r\n\tSun, 06 Dec 2026 19:00:00 +0000',
    )
    // A HELO that is no host name is left out; an IPv6 client is written as RFC 5321 says.
    assert.match(
      receivedField({ ...base, client: { helo: 'x (y) z', address: '2001:db8::1' } }).raw.toString(),
      /^Received: from \[IPv6:2001:db8::1\] \(\[IPv6:2001:db8::1\]\)\r\n/,
    )
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
      'user@dest.example/other.example',
      'user@dest.example?x',
      'user@localhost',
      'user@-bad.example',
      '@dest.example',
    ]) {
      assert.equal(checkRecipient(bad).ok, false, bad)
    }
  })
})
