import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { feedbackEvents } from '@atmos/db'
import { and, eq } from 'drizzle-orm'
import { createTransport } from 'nodemailer'
import type { FblIngestService } from '../../../services/fbl-ingest/src/service.ts'
import {
  addMember,
  BOUNCE_DOMAIN,
  type Harness,
  harness,
  POOL_DOMAIN,
  type Spooled,
  spool,
  startService,
  type TestMember,
} from '../../../services/fbl-ingest/test/helpers.ts'
import { SINK_PROVIDER } from '../src/network.ts'
import type { SinkEntry } from '../src/sink.ts'
import { eventually, type Fixture, startNetwork } from './helpers.ts'

// The sink as a receiving MX: what it keeps and the verdicts it computes (through the local
// DNS), the bounce it is told to give the next recipient, and the complaint and late bounce
// its buttons send, which a real fbl-ingest (trusting the sink as a provider, as the stack
// configures it) accepts and attributes to the member's message by the pool's tokens.

const SELECTOR = 'sel1'

function rsa() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    txt: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`,
  }
}

describe('the sink MX', () => {
  let h: Harness
  let f: Fixture
  let fbl: FblIngestService
  let member: TestMember
  let sent: Spooled
  const key = rsa()
  const forger = rsa()

  before(async () => {
    h = await harness('localnet-sink')
    f = await startNetwork({ database: h.database, pool: { domain: POOL_DOMAIN, bounceDomain: BOUNCE_DOMAIN } })
    fbl = await startService({
      ...h.env,
      ATMOS_FBL_INGEST_DNS_SERVERS: f.network.dns!.address,
      ATMOS_FBL_INGEST_DNS_TIMEOUT: '2s',
      ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS: JSON.stringify([SINK_PROVIDER]),
    })
    f.network.opts.inbound = { host: '127.0.0.1', port: fbl.ctx.listener!.address!.port }
    member = await addMember(h.db)
    sent = await spool(h, member, 'reader@receiver.example')
    f.network.publish([
      { name: `${SELECTOR}._domainkey.${member.domain}`, type: 'TXT', strings: key.txt.match(/.{1,255}/g)! },
    ])
  })
  after(async () => {
    await fbl?.destroy()
    await f?.network.stop()
    await f?.plc.drop()
    await h?.close()
  })

  const transport = () =>
    createTransport({
      host: '127.0.0.1',
      port: f.network.sink!.port,
      secure: false,
      name: `mx.${POOL_DOMAIN}`,
      tls: { rejectUnauthorized: false },
    })

  async function send(subject: string, privateKey: string) {
    const t = transport()
    try {
      return await t.sendMail({
        envelope: { from: sent.returnPath, to: [sent.recipient] },
        from: `noreply@${member.domain}`,
        to: sent.recipient,
        subject,
        text: 'Your code is 123456.',
        headers: { 'X-Atmos-Ref': sent.ref },
        dkim: { domainName: member.domain, keySelector: SELECTOR, privateKey },
      })
    } finally {
      t.close()
    }
  }

  const api = async (path: string, body?: unknown) => {
    const res = await fetch(`${f.network.info().webUrl}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    assert.ok(res.ok, `${path}: ${res.status} ${await res.clone().text()}`)
    return res.json() as Promise<Record<string, unknown>>
  }
  const listed = async () => (await api('/api/sink')).messages as SinkEntry[]

  it('keeps a DKIM-signed message with the verdicts a receiver computes, and a forged one fails', async () => {
    await send('signed', key.pem)
    await send('forged', forger.pem)
    const [forged, signed] = await listed()
    assert.equal(signed?.subject, 'signed')
    assert.deepEqual(
      signed?.verdicts.dkim.map((d) => [d.domain, d.selector, d.result]),
      [[member.domain, SELECTOR, 'pass']],
    )
    assert.equal(signed?.verdicts.spf.result, 'pass', 'the pool bounce domain allows 127.0.0.1')
    assert.equal(signed?.mailFrom, sent.returnPath)
    assert.equal(forged?.subject, 'forged', 'newest first')
    assert.equal(forged?.verdicts.dkim[0]?.result, 'fail')
    const page = await (await fetch(`${f.network.info().webUrl}/sink/${signed!.id}`)).text()
    assert.match(
      page,
      new RegExp(`DKIM d=${member.domain.replace(/\./g, '\\.')} s=${SELECTOR}</td><td class="pass">pass`),
    )
  })

  it('answers the next recipient with the bounce asked for, once', async () => {
    // The page's button: a same-origin form post.
    const web = f.network.info().webUrl
    const button = await fetch(`${web}/sink/next`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin: web, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'reply=hard',
    })
    assert.equal(button.status, 303)
    assert.match(await (await fetch(`${web}/sink`)).text(), /The next recipient is <strong>answered 550 5\.1\.1/)
    await assert.rejects(send('hard', key.pem), (err: { responseCode?: number; response?: string }) => {
      assert.equal(err.responseCode, 550)
      assert.match(err.response ?? '', /5\.1\.1/)
      return true
    })
    await api('/api/sink/next', { reply: 'soft' })
    await assert.rejects(send('soft', key.pem), (err: { responseCode?: number; response?: string }) => {
      assert.equal(err.responseCode, 451)
      assert.match(err.response ?? '', /^451 4\./)
      return true
    })
    const after = await send('accepted again', key.pem)
    assert.match(after.response, /^250 /)
  })

  it("sends a complaint and a late bounce that fbl-ingest accepts and attributes to the member's message", async () => {
    const signed = (await listed()).find((m) => m.subject === 'signed')!
    const complaint = (await api(`/api/sink/${signed.id}/complain`, {})).reply as string
    assert.match(complaint, /^250 /)
    const bounce = (await api(`/api/sink/${signed.id}/bounce`, {})).reply as string
    assert.match(bounce, /^250 /)
    const events = await eventually('the complaint and the bounce attributed', async () => {
      const rows = await h.db
        .select()
        .from(feedbackEvents)
        .where(and(eq(feedbackEvents.memberId, member.id)))
      return rows.length >= 2 ? rows : undefined
    })
    const byType = Object.fromEntries(events.map((e) => [e.type, e]))
    assert.equal(byType.complaint?.messageId, sent.messageId)
    assert.equal(
      (byType.complaint?.details as { reporter?: string } | undefined)?.reporter,
      SINK_PROVIDER.name,
      'counted: a trusted provider',
    )
    assert.equal(byType.hard_bounce?.messageId, sent.messageId)
    assert.equal(byType.hard_bounce?.recipient, sent.recipient)
    const shown = (await api(`/api/sink/${signed.id}`)) as unknown as SinkEntry
    assert.deepEqual(
      shown.feedback.map((x) => x.kind),
      ['complaint', 'bounce'],
    )
  })
})
