import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb } from '@atmos/db'
import {
  MEMBER_DID_HEADER,
  REFERENCE_HEADER,
  readFeedbackId,
  readMessageToken,
  readVerpAddress,
} from '@atmos/mail-feedback'
import { deliverMessage, memberStatusChanged, TypedQueue } from '@atmos/queues'
import { setMemberStatus } from '@atmos/reputation'
import { closeBaseContext, createBaseContext, createLogger } from '@atmos/runtime'
import { readSecretFile } from '@atmos/secrets'
import { closedPort, TestDnsServer, testRedis } from '@atmos/testkit'
import { authenticate } from 'mailauth'
import { relayConfigSchema } from '../src/config.ts'
import type { AddedMember } from '../src/members/store.ts'
import { fieldValue, parseMessage } from '../src/message/headers.ts'
import { Submission } from '../src/submission/index.ts'
import { eventually } from './delivery-helpers.ts'
import {
  BOUNCE_DOMAIN,
  createMember,
  dkimZone,
  dnsResolverFor,
  type Harness,
  POOL_DOMAIN,
  poolPublicKey,
  refusal,
  rfc822,
  SmtpDialog,
  setLabel,
  spooled,
  startSubmission,
  submitRaw,
  submitter,
} from './helpers.ts'

const MAX_SIZE = 64 * 1024

describe('relay submission', () => {
  let h: Harness
  let alice: AddedMember
  let bob: AddedMember
  let dns: TestDnsServer
  let tlsPort: number

  before(async () => {
    tlsPort = await closedPort()
    h = await startSubmission({
      ATMOS_RELAY_SUBMISSION_MAX_SIZE: String(MAX_SIZE),
      ATMOS_RELAY_SUBMISSION_MAX_RECIPIENTS: '3',
      ATMOS_RELAY_SUBMISSION_MAX_MESSAGES_PER_CONNECTION: '2',
      ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_MEMBER: '3',
      ATMOS_RELAY_SUBMISSION_AUTH_FAILURE_LIMIT: '4',
      ATMOS_RELAY_SUBMISSION_AUTH_CONCURRENCY_PER_IP: '3',
      ATMOS_RELAY_SUBMISSION_TLS_PORT: String(tlsPort),
    })
    alice = await createMember(h, 'member.example')
    bob = await createMember(h, 'other.example')
    dns = new TestDnsServer({
      ...dkimZone(alice),
      'pool1._domainkey.pool.example': { TXT: [`v=DKIM1; k=rsa; p=${await poolPublicKey(h.sql)}`] },
      '_dmarc.member.example': { TXT: ['v=DMARC1; p=reject'] },
      'member.example': { TXT: ['v=spf1 -all'] },
    })
    await dns.start()
  })
  after(async () => {
    await dns?.close()
    await h?.close()
  })

  const spooledCount = async () => (await spooled(h.sql)).length

  it('spools one signed copy per recipient, headers rewritten, body byte for byte, both DKIM signatures and DMARC passing', async () => {
    const body = 'Hello,\r\n\r\n..a line that starts with a dot\r\nÜnïcödé bytes stay as they are\r\n-- \r\nsig\r\n'
    const raw = rfc822(
      {
        From: 'Alice <alice@member.example>',
        To: 'x@dest.example',
        Cc: 'y@else.example',
        Bcc: 'hidden@secret.example',
        Subject: 'Your code',
        'Feedback-ID': 'forged:m999:atmos:atmospool',
        [REFERENCE_HEADER]: 'deadbeef.0123456789ab',
        [MEMBER_DID_HEADER]: 'did:plc:someoneelse',
        'List-Unsubscribe': '<https://member.example/unsub?u=1>',
        'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
        'MIME-Version': '1.0',
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Transfer-Encoding': '8bit',
      },
      body,
    )
    const info = await submitRaw(
      h.port,
      alice,
      { from: 'bounce@member.example', to: ['x@dest.example', 'y@else.example', 'hidden@secret.example'] },
      raw,
    )
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9a-f-]{36} and 2 more$/)

    const rows = await spooled(h.sql)
    assert.equal(rows.length, 3)
    assert.deepEqual(rows.map((r) => r.address).sort(), ['hidden@secret.example', 'x@dest.example', 'y@else.example'])
    const secret = readSecretFile(h.files.tokenSecretFile)
    const verp = { bounceDomain: BOUNCE_DOMAIN, prefix: 'b', secret }
    const messageIds = new Set<string>()
    for (const row of rows) {
      assert.equal(row.memberId, alice.id)
      assert.equal(row.envelopeFrom, 'bounce@member.example')
      assert.equal(readVerpAddress(verp, row.returnPath), row.id)
      const parsed = parseMessage(row.body)
      const get = (name: string) => parsed.fields.filter((f) => f.key === name.toLowerCase()).map(fieldValue)
      assert.deepEqual(get('Bcc'), [])
      assert.deepEqual(get('Feedback-ID'), [`tx:m${alice.id}:atmos:atmospool`])
      assert.equal(readFeedbackId(get('Feedback-ID')[0]!, 'atmospool'), alice.id)
      assert.deepEqual(get(MEMBER_DID_HEADER), [alice.did])
      assert.equal(get(REFERENCE_HEADER).length, 1)
      assert.equal(readMessageToken(verp, get(REFERENCE_HEADER)[0]!), row.id, 'the reference names this copy')
      assert.deepEqual(get('List-Unsubscribe'), ['<https://member.example/unsub?u=1>'])
      assert.deepEqual(get('List-Unsubscribe-Post'), ['List-Unsubscribe=One-Click'])
      assert.equal(get('Message-ID').length, 1)
      assert.match(get('Message-ID')[0]!, /^<[0-9a-f-]{36}@member\.example>$/)
      messageIds.add(get('Message-ID')[0]!)
      assert.equal(get('Date').length, 1)
      assert.ok(Math.abs(Date.parse(get('Date')[0]!) - Date.now()) < 600_000)
      assert.equal(get('DKIM-Signature').length, 3)
      // The body is the submitted bytes, untouched.
      assert.ok(parsed.body.equals(Buffer.from(body, 'utf8')))

      const auth = await authenticate(row.body, {
        ip: '198.51.100.7',
        helo: 'relay.pool.example',
        sender: row.returnPath,
        mta: 'mx.dest.example',
        resolver: dnsResolverFor(dns.address) as never,
      })
      const results = auth.dkim.results.map((r) => [r.signingDomain, r.selector, r.status.result])
      assert.deepEqual(results, [
        ['member.example', 'atmos1r', 'pass'],
        ['member.example', 'atmos1e', 'pass'],
        [POOL_DOMAIN, 'pool1', 'pass'],
      ])
      for (const sig of get('DKIM-Signature')) {
        const h = /(?:^|;)\s*h=([^;]+)/.exec(sig)![1]!.replace(/\s+/g, '').toLowerCase().split(':')
        // From over-signed; every header we add or that feedback loops key on is signed.
        assert.equal(h.filter((k) => k === 'from').length, 2, sig)
        for (const k of [
          'feedback-id',
          'x-atmos-ref',
          'x-atmos-member-did',
          'list-unsubscribe-post',
          'message-id',
          'date',
        ]) {
          assert.ok(h.includes(k), `${k} signed: ${sig}`)
        }
        assert.ok(!h.includes('bcc'))
      }
      assert.ok(auth.dmarc)
      assert.equal(auth.dmarc.status.result, 'pass')
      assert.equal(auth.dmarc.alignment.dkim.result, 'member.example')
    }
    assert.equal(messageIds.size, 1, 'one Message-ID for every copy of one submission')

    const redis = testRedis()
    try {
      const queue = new TypedQueue(deliverMessage, redis, h.prefix)
      // The copies spooled together go to delivery as one job naming them all, under its first's id.
      const jobs = await queue.queue.getJobs(['waiting', 'prioritized', 'delayed', 'active'])
      const named = jobs.flatMap((j) => (j.data.messageIds ?? [j.data.messageId]) as string[])
      for (const row of rows) assert.ok(named.includes(row.id), `message ${row.id} has a delivery job`)
      const batch = jobs.find((j) => j.data.messageIds?.includes(rows[0]!.id))
      assert.equal(batch?.id, `b-${batch?.data.messageIds?.[0]}`)
      await queue.close()
    } finally {
      redis.disconnect()
    }
    const [vol] = await h.sql<{ recipients: number; messages: number }[]>`
      select recipients, messages from send_volume where member_id = ${alice.id}`
    assert.deepEqual({ ...vol }, { recipients: 3, messages: 1 })
  })

  it('a signature breaks when a From is added after signing (From is over-signed)', async () => {
    await submitRaw(
      h.port,
      alice,
      { from: 'alice@member.example', to: ['z@dest.example'] },
      rfc822({ From: 'alice@member.example', To: 'z@dest.example', Subject: 's' }, 'hi\r\n'),
    )
    const row = (await spooled(h.sql)).at(-1)!
    const tampered = Buffer.concat([Buffer.from('From: ceo@member.example\r\n'), row.body])
    const auth = await authenticate(tampered, {
      ip: '198.51.100.7',
      helo: 'x',
      sender: row.returnPath,
      mta: 'mx',
      resolver: dnsResolverFor(dns.address) as never,
    })
    assert.deepEqual(
      auth.dkim.results.map((r) => r.status.result),
      ['fail', 'fail', 'fail'],
    )
  })

  it('accepts a From on a subdomain of the member domain', async () => {
    const info = await submitRaw(
      h.port,
      alice,
      { from: 'bounce@mail.member.example', to: ['a@dest.example'] },
      rfc822({ From: 'news@news.member.example', To: 'a@dest.example', Subject: 'x' }, 'x\r\n'),
    )
    assert.match(info.response, /^250 /)
  })

  it('implicit TLS (465) accepts submissions too', async () => {
    const t = submitter(tlsPort, alice.username, alice.password, { secure: true, requireTLS: false })
    try {
      const info = await t.sendMail({ from: 'alice@member.example', to: 'tls@dest.example', subject: 's', text: 't' })
      assert.match(info.response, /^250 /)
    } finally {
      t.close()
    }
  })

  it('refuses AUTH before STARTTLS with 530 5.7.0, and MAIL without AUTH', async () => {
    const count = await spooledCount()
    const { dialog } = await SmtpDialog.open(h.port)
    try {
      const ehlo = await dialog.send('EHLO client.example')
      assert.match(ehlo, /STARTTLS/)
      assert.match(ehlo, /SIZE 65536/)
      assert.match(
        await dialog.login(alice.username, alice.password),
        /^530 5\.7\.0 Must issue a STARTTLS command first/,
      )
      assert.match(await dialog.send('MAIL FROM:<alice@member.example>'), /^530 5\.7\.0 Authentication required/)
    } finally {
      dialog.close()
    }
    assert.equal(await spooledCount(), count)
    assert.ok(h.submission.metrics.refused.value({ reason: 'no_tls' }) >= 1)
  })

  it('refuses a wrong password with 535 5.7.8', async () => {
    const err = await refusal(
      submitRaw(
        h.port,
        { username: alice.username, password: 'wrong' },
        { from: 'alice@member.example', to: ['a@dest.example'] },
        'x',
      ),
    )
    assert.equal(err.responseCode, 535)
    assert.match(err.response ?? '', /^535 5\.7\.8 /)
    const unknown = await refusal(
      submitRaw(
        h.port,
        { username: 'nobody.example', password: 'x' },
        { from: 'a@nobody.example', to: ['a@dest.example'] },
        'x',
      ),
    )
    assert.match(unknown.response ?? '', /^535 5\.7\.8 /)
  })

  it('backs off an address that keeps guessing, parallel guesses included; right passwords never count', async () => {
    const redis = testRedis()
    const keys = [`${h.prefix}:relay:auth-failures:127.0.0.1`, `${h.prefix}:relay:auth-checks:127.0.0.1`]
    await redis.del(...keys)
    try {
      const attempt = async (password: string) => {
        const { dialog } = await SmtpDialog.open(h.port)
        try {
          await dialog.send('EHLO client.example')
          await dialog.starttls()
          await dialog.send('EHLO client.example')
          return await dialog.login(alice.username, password)
        } finally {
          dialog.close()
        }
      }
      // Right passwords in parallel: none is held back.
      const good = await Promise.all(Array.from({ length: 3 }, () => attempt(alice.password)))
      assert.deepEqual(
        good.map((r) => r.slice(0, 3)),
        ['235', '235', '235'],
      )
      // Limit 4, 3 logins checked at once: a burst of 10 guesses gets at most 4 + 3 - 1 checked.
      const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => attempt(`guess-${i}`)))
      const checked = burst.filter((r) => r.startsWith('535 5.7.8')).length
      assert.ok(checked >= 1 && checked <= 6, burst.join('\n'))
      assert.ok(
        burst.every((r) => /^(535 5\.7\.8|454 4\.7\.0 )/.test(r)),
        burst.join('\n'),
      )
      let more = 0
      while (!(await attempt(`again-${more}`)).startsWith('454') && more < 10) more++
      assert.ok(checked + more <= 6, `${checked} + ${more} guesses were checked`)
      // Locked out, even with the right password, until the window passes.
      assert.match(
        await attempt(alice.password),
        /^454 4\.7\.0 Too many failed logins from 127\.0\.0\.1; try again in 15 minutes/,
      )
    } finally {
      await redis.del(...keys)
      redis.disconnect()
    }
  })

  it('refuses a header From outside the member domain with 550 5.7.1 naming the domain it may use', async () => {
    const count = await spooledCount()
    const err = await refusal(
      submitRaw(
        h.port,
        alice,
        { from: 'alice@member.example', to: ['a@dest.example'] },
        rfc822({ From: 'ceo@other.example', To: 'a@dest.example', Subject: 'x' }, 'x\r\n'),
      ),
    )
    assert.equal(err.responseCode, 550)
    assert.match(err.response ?? '', /^550 5\.7\.1 From must be an address at member\.example or a subdomain of it/)
    // A look-alike suffix is not a subdomain.
    const suffix = await refusal(
      submitRaw(
        h.port,
        alice,
        { from: 'alice@member.example', to: ['a@dest.example'] },
        rfc822({ From: 'a@evilmember.example', To: 'a@dest.example' }, 'x\r\n'),
      ),
    )
    assert.match(suffix.response ?? '', /^550 5\.7\.1 /)
    const two = await refusal(
      submitRaw(
        h.port,
        alice,
        { from: 'alice@member.example', to: ['a@dest.example'] },
        rfc822({ From: 'a@member.example, b@other.example', To: 'a@dest.example' }, 'x\r\n'),
      ),
    )
    assert.match(two.response ?? '', /^550 5\.6\.0 /)
    const sender = await refusal(
      submitRaw(
        h.port,
        alice,
        { from: 'alice@member.example', to: ['a@dest.example'] },
        rfc822({ From: 'a@member.example', Sender: 'x@other.example', To: 'a@dest.example' }, 'x\r\n'),
      ),
    )
    assert.match(sender.response ?? '', /^550 5\.7\.1 Sender must be an address at member\.example/)
    assert.equal(await spooledCount(), count)
  })

  it('refuses an envelope sender outside the member domain, and the null sender', async () => {
    const err = await refusal(
      submitRaw(
        h.port,
        alice,
        { from: 'alice@other.example', to: ['a@dest.example'] },
        rfc822({ From: 'alice@member.example' }, 'x\r\n'),
      ),
    )
    assert.equal(err.responseCode, 550)
    assert.equal(
      err.response,
      `550 5.7.1 <alice@other.example> is not at a domain ${alice.did} holds in the relay: member.example`,
    )
    // Bob may not send as Alice's domain either: each member only as its own.
    const bobAsAlice = await refusal(
      submitRaw(
        h.port,
        bob,
        { from: 'bob@member.example', to: ['a@dest.example'] },
        rfc822({ From: 'bob@member.example' }, 'x\r\n'),
      ),
    )
    assert.equal(
      bobAsAlice.response,
      `550 5.7.1 <bob@member.example> is not at a domain ${bob.did} holds in the relay: other.example`,
    )
    const { dialog } = await SmtpDialog.open(h.port)
    try {
      await dialog.send('EHLO c.example')
      await dialog.starttls()
      await dialog.send('EHLO c.example')
      assert.match(await dialog.login(alice.username, alice.password), /^235 /)
      assert.match(await dialog.send('MAIL FROM:<>'), /^550 5\.7\.1 /)
      // Forms that read as the member's domain only to a lenient parser: an absolute name, a
      // quoted or routed local part, an address after a path.
      for (const from of ['alice@member.example.', '"a@b"@member.example', 'a%other.example@member.example']) {
        assert.match(await dialog.send(`MAIL FROM:<${from}>`), /^5\d\d 5\.\d\.\d /, from)
      }
      assert.match(await dialog.send('MAIL FROM:<alice@member.example>'), /^250 /)
    } finally {
      dialog.close()
    }
  })

  it('refuses a suspended member at MAIL FROM, and takes it back once reinstated', async () => {
    const carol = await createMember(h, 'carol.example')
    const msg = rfc822({ From: 'carol@carol.example', To: 'a@dest.example' }, 'x\r\n')
    const db = createDb({ url: h.db.url, poolMax: 1 })
    const queue = new TypedQueue(memberStatusChanged, h.ctx.redis, h.prefix)
    const changeStatus = (to: 'active' | 'suspended', why: string) =>
      setMemberStatus(db, queue, carol.did, to, why, 'operator:test')
    await changeStatus('suspended', 'complaint rate 0.9%')
    const err = await refusal(submitRaw(h.port, carol, { from: 'carol@carol.example', to: ['a@dest.example'] }, msg))
    assert.equal(err.responseCode, 550)
    assert.equal(err.response, `550 5.7.1 ${carol.did} is suspended from the relay: complaint rate 0.9%`)
    await changeStatus('active', 'reviewed')
    const ok = await submitRaw(h.port, carol, { from: 'carol@carol.example', to: ['a@dest.example'] }, msg)
    assert.match(ok.response, /^250 /)
    await queue.close()
    await db.$client.end()
  })

  it('refuses a member without a current verified-mail-operator label (none, negated, expired)', async () => {
    const none = await createMember(h, 'unverified.example', { verified: false })
    const negated = await createMember(h, 'negated.example')
    await setLabel(h.sql, negated.did, { neg: true })
    const expired = await createMember(h, 'expired.example', { labelExp: new Date(Date.now() - 60_000).toISOString() })
    const fresh = await createMember(h, 'fresh.example', { labelExp: new Date(Date.now() + 3_600_000).toISOString() })
    for (const m of [none, negated, expired]) {
      const err = await refusal(
        submitRaw(
          h.port,
          m,
          { from: `a@${m.domain}`, to: ['a@dest.example'] },
          rfc822({ From: `a@${m.domain}` }, 'x\r\n'),
        ),
      )
      assert.equal(err.responseCode, 550, m.domain)
      assert.match(
        err.response ?? '',
        new RegExp(
          `^550 5\\.7\\.1 ${m.domain.replace('.', '\\.')}'s attestation does not verify now: fix its DNS and attestation, then retry`,
        ),
      )
    }
    const ok = await submitRaw(
      h.port,
      fresh,
      { from: 'a@fresh.example', to: ['a@dest.example'] },
      rfc822({ From: 'a@fresh.example' }, 'x\r\n'),
    )
    assert.match(ok.response, /^250 /)
  })

  it('refuses an oversized message with 552 5.3.4 (declared SIZE and actual bytes)', async () => {
    const count = await spooledCount()
    const big = rfc822({ From: 'alice@member.example', To: 'a@dest.example' }, `${'x'.repeat(998)}\r\n`.repeat(70))
    const { dialog } = await SmtpDialog.open(h.port)
    try {
      await dialog.send('EHLO c.example')
      await dialog.starttls()
      await dialog.send('EHLO c.example')
      await dialog.login(alice.username, alice.password)
      assert.match(await dialog.send(`MAIL FROM:<alice@member.example> SIZE=${MAX_SIZE + 1}`), /^552 /)
      // Declared small, sent big: counted while reading, refused after the final dot.
      assert.match(await dialog.send('MAIL FROM:<alice@member.example> SIZE=100'), /^250 /)
      assert.match(await dialog.send('RCPT TO:<a@dest.example>'), /^250 /)
      assert.match(await dialog.send('DATA'), /^354 /)
      assert.match(await dialog.send(`${big}\r\n.`), /^552 5\.3\.4 Message size exceeds the limit of 65536 bytes/)
    } finally {
      dialog.close()
    }
    const viaClient = await refusal(
      submitRaw(h.port, alice, { from: 'alice@member.example', to: ['a@dest.example'] }, big),
    )
    assert.equal(viaClient.responseCode, 552)
    assert.equal(await spooledCount(), count)
  })

  it('refuses a suppressed recipient at RCPT with 550 5.1.1 and the reason; lifted or expired entries do not count', async () => {
    await h.sql`
      insert into suppressions (member_id, address, reason, expires_at, removed_at) values
        (${alice.id}, 'bounced@dest.example', 'hard_bounce', null, null),
        (${alice.id}, 'complainer@dest.example', 'complaint', now() + interval '1 day', null),
        (${alice.id}, 'unsubscribed@dest.example', 'unsubscribe', null, null),
        (${alice.id}, 'lapsed@dest.example', 'hard_bounce', now() - interval '1 minute', null),
        (${alice.id}, 'lifted@dest.example', 'manual', null, now()),
        (${bob.id}, 'ok@dest.example', 'complaint', null, null)`
    const send = (to: string[]) =>
      submitRaw(h.port, alice, { from: 'alice@member.example', to }, rfc822({ From: 'alice@member.example' }, 'x\r\n'))
    const bounced = await refusal(send(['Bounced@dest.example']))
    assert.equal(bounced.responseCode, 550)
    assert.match(
      bounced.response ?? '',
      new RegExp(
        `^550 5\\.1\\.1 <Bounced@dest\\.example> is on the suppression list of ${alice.did} \\(sending as member\\.example\\) since \\d{4}-\\d\\d-\\d\\d: it bounced permanently`,
      ),
    )
    const complained = await refusal(send(['complainer@dest.example']))
    assert.match(complained.response ?? '', /^550 5\.1\.1 .*reported your mail as spam/)
    const unsubscribed = await refusal(send(['unsubscribed@dest.example']))
    assert.match(unsubscribed.response ?? '', /^550 5\.1\.1 .*: its owner unsubscribed$/)
    // Bob's suppression is Bob's: Alice may still write to that address.
    const info = await send(['lapsed@dest.example', 'lifted@dest.example', 'ok@dest.example'])
    assert.match(info.response, /^250 /)
    assert.ok(h.submission.metrics.refused.value({ reason: 'suppressed' }) >= 2)
  })

  it('refuses recipients past the per-message limit with 452 4.5.3', async () => {
    const t = submitter(h.port, alice.username, alice.password)
    try {
      const info = await t.sendMail({
        envelope: {
          from: 'alice@member.example',
          to: ['r1@dest.example', 'r2@dest.example', 'r3@dest.example', 'r4@dest.example'],
        },
        raw: rfc822({ From: 'alice@member.example', To: 'list@member.example' }, 'x\r\n'),
      })
      assert.deepEqual(info.accepted, ['r1@dest.example', 'r2@dest.example', 'r3@dest.example'])
      assert.deepEqual(info.rejected, ['r4@dest.example'])
      const errs = (info as unknown as { rejectedErrors: { response: string }[] }).rejectedErrors
      assert.match(errs[0]!.response, /^452 4\.5\.3 Too many recipients: at most 3 a message/)
    } finally {
      t.close()
    }
  })

  it('limits messages per connection and connections per member', async () => {
    const open = async (m: AddedMember) => {
      const { dialog } = await SmtpDialog.open(h.port)
      await dialog.send('EHLO c.example')
      await dialog.starttls()
      await dialog.send('EHLO c.example')
      return { dialog, auth: await dialog.login(m.username, m.password) }
    }
    const erin = await createMember(h, 'erin.example')
    const first = await open(erin)
    try {
      for (let i = 0; i < 2; i++) {
        assert.match(await first.dialog.send('MAIL FROM:<e@erin.example>'), /^250 /)
        assert.match(await first.dialog.send('RCPT TO:<n@dest.example>'), /^250 /)
        assert.match(await first.dialog.send('DATA'), /^354 /)
        assert.match(await first.dialog.send('From: e@erin.example\r\n\r\nhi\r\n.'), /^250 /)
      }
      assert.match(
        await first.dialog.send('MAIL FROM:<e@erin.example>'),
        /^421 4\.7\.0 At most 2 messages a connection/,
      )
    } finally {
      first.dialog.close()
    }
    const dave = await createMember(h, 'dave.example')
    const conns = [await open(dave), await open(dave), await open(dave), await open(dave)]
    try {
      assert.deepEqual(
        conns.map((c) => c.auth.slice(0, 3)),
        ['235', '235', '235', '454'],
      )
      assert.ok(conns[3]!.auth.startsWith(`454 4.7.0 ${dave.did} already holds 3 connections (at most 3); retry later`))
    } finally {
      for (const c of conns) c.dialog.close()
    }
  })

  it("counts a member's connections across relay replicas, and frees a slot when a connection closes", async () => {
    // A second replica: same database, same Redis prefix, its own port.
    const config = loadConfig(relayConfigSchema, {
      env: { ...h.env, ATMOS_RELAY_SUBMISSION_PORT: '0', ATMOS_RELAY_SUBMISSION_TLS_PORT: '0' },
    })
    const ctx = createBaseContext('relay', config, { logger: createLogger('relay', 'silent') })
    const replica = new Submission(ctx)
    await replica.start()
    const open = async (port: number, m: AddedMember) => {
      const { dialog } = await SmtpDialog.open(port)
      await dialog.send('EHLO c.example')
      await dialog.starttls()
      await dialog.send('EHLO c.example')
      return { dialog, auth: await dialog.login(m.username, m.password) }
    }
    const fay = await createMember(h, 'fay.example')
    const other = replica.addresses.starttls!.port
    const conns = [await open(h.port, fay), await open(h.port, fay), await open(other, fay), await open(other, fay)]
    try {
      assert.deepEqual(
        conns.map((c) => c.auth.slice(0, 3)),
        ['235', '235', '235', '454'],
        'at most 3 across both replicas',
      )
      conns[0]!.dialog.close()
      const again = await eventually(async () => {
        const c = await open(other, fay)
        if (c.auth.startsWith('235')) return c
        c.dialog.close()
        return undefined
      })
      conns.push(again)
    } finally {
      for (const c of conns) c.dialog.close()
      await replica.stop()
      await closeBaseContext(ctx)
    }
  })

  it('is no open relay: unauthenticated clients and routing tricks reach no one', async () => {
    const count = await spooledCount()
    // Unauthenticated, with and without TLS: nothing past MAIL.
    for (const tls of [false, true]) {
      const { dialog } = await SmtpDialog.open(h.port)
      try {
        await dialog.send('EHLO c.example')
        if (tls) {
          await dialog.starttls()
          await dialog.send('EHLO c.example')
        }
        assert.match(await dialog.send('MAIL FROM:<alice@member.example>'), /^530 5\.7\.0/)
        assert.match(await dialog.send('RCPT TO:<victim@dest.example>'), /^530 5\.7\.0/)
        assert.match(await dialog.send('DATA'), /^530 5\.7\.0/)
      } finally {
        dialog.close()
      }
    }
    // Authenticated: the old routing forms are refused one by one, and no DATA follows.
    const { dialog } = await SmtpDialog.open(h.port)
    try {
      await dialog.send('EHLO c.example')
      await dialog.starttls()
      await dialog.send('EHLO c.example')
      await dialog.login(alice.username, alice.password)
      assert.match(await dialog.send('MAIL FROM:<alice@member.example>'), /^250 /)
      for (const rcpt of [
        '<user%victim.example@pool.example>',
        '<victim.example!user@pool.example>',
        '<"user@victim.example"@pool.example>',
        '<"quoted"@dest.example>',
        '<user@[127.0.0.1]>',
        '<user@[IPv6:::1]>',
      ]) {
        assert.match(await dialog.send(`RCPT TO:${rcpt}`), /^5\d\d /, rcpt)
      }
      assert.match(await dialog.send('DATA'), /^5\d\d /)
      // A source route is dropped as RFC 5321 says: only the final address could ever be sent to.
      assert.match(await dialog.send('RCPT TO:<@relay.victim.example:final@dest.example>'), /^250 /)
      assert.match(await dialog.send('DATA'), /^354 /)
      assert.match(await dialog.send('From: alice@member.example\r\n\r\nx\r\n.'), /^250 /)
    } finally {
      dialog.close()
    }
    const rows = (await spooled(h.sql)).slice(count)
    assert.deepEqual(
      rows.map((r) => r.address),
      ['final@dest.example'],
    )
    assert.ok(h.submission.metrics.refused.value({ reason: 'recipient_syntax' }) >= 5)
  })

  it('exports accepted and refused counts on /metrics', async () => {
    const text = await h.ctx.metrics.metrics()
    assert.match(text, /^atmos_relay_submissions_accepted_total\{service="relay"\} [1-9]\d*$/m)
    assert.match(text, /^atmos_relay_submissions_refused_total\{reason="suppressed",service="relay"\} [1-9]\d*$/m)
    assert.match(text, /^atmos_relay_submissions_refused_total\{reason="foreign_from",service="relay"\} [1-9]\d*$/m)
    // The served certificate's expiry, for the certificate-expiry alert: in the future, as a Unix time.
    const expiry = /^atmos_relay_submission_tls_cert_expiry_timestamp_seconds\{service="relay"\} (\S+)$/m.exec(text)
    assert.ok(expiry, 'no certificate expiry gauge')
    assert.ok(Number(expiry[1]) > Date.now() / 1000, `expiry ${expiry[1]} is not in the future`)
  })
})
