import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { inboundMessages } from '@atmos/db'
import { verpAddress } from '@atmos/mail-feedback'
import { testCertificate } from '@atmos/testkit'
import { createTransport } from 'nodemailer'
import type { FblIngestService } from '../src/service.ts'
import { BOUNCE_DOMAIN, type Harness, harness, POOL_DOMAIN, smtpDialog, startService } from './helpers.ts'

let h: Harness
let service: FblIngestService
let port: number

before(async () => {
  h = await harness('fbl-smtp')
  service = await startService({
    ...h.env,
    ATMOS_FBL_INGEST_ROLES: 'smtp',
    ATMOS_FBL_INGEST_SMTP_MAX_SIZE: String(64 * 1024),
  })
  port = service.ctx.listener!.address!.port
})
after(async () => {
  await service?.destroy()
  await h?.close()
})

const goodVerp = () => verpAddress(h.verp, '0b9e8f0e-1c1e-4f5e-9a4e-3d2f1b0c9a8e')

async function rcpt(address: string): Promise<string> {
  const replies = await smtpDialog(port, ['EHLO client.example', 'MAIL FROM:<>', `RCPT TO:${address}`])
  return replies[2]!
}

describe('inbound SMTP recipients', () => {
  it('accepts the VERP, feedback-loop and operator mailboxes of the pool', async () => {
    assert.match(await rcpt(`<${goodVerp()}>`), /^250 /)
    assert.match(await rcpt(`<${goodVerp().toUpperCase()}>`), /^250 /, 'some MTAs fold the case of the return path')
    for (const box of ['postmaster', 'abuse', 'dmarc', 'fbl']) {
      assert.match(await rcpt(`<${box}@${POOL_DOMAIN}>`), /^250 /, box)
    }
    assert.match(await rcpt(`<postmaster@${BOUNCE_DOMAIN}>`), /^250 /)
    assert.match(await rcpt('<Postmaster>'.replace('>', `@${POOL_DOMAIN}>`)), /^250 /)
  })

  it('refuses everything else with 550 5.7.1: never an open relay', async () => {
    const forged = goodVerp().replace(/\.[0-9a-f]{12}@/, '.000000000000@')
    const refused = [
      '<someone@elsewhere.example>',
      `<someone@sub.${POOL_DOMAIN}>`,
      `<nobody@${POOL_DOMAIN}>`,
      `<victim%elsewhere.example@${POOL_DOMAIN}>`,
      `<elsewhere.example!victim@${POOL_DOMAIN}>`,
      `<@${POOL_DOMAIN}:victim@elsewhere.example>`,
      `<@${BOUNCE_DOMAIN},@${POOL_DOMAIN}:victim@elsewhere.example>`,
      `<${forged}>`,
      `<b+nottoken@${BOUNCE_DOMAIN}>`,
      `<postmaster@${POOL_DOMAIN}.elsewhere.example>`,
      `<${goodVerp().replace(BOUNCE_DOMAIN, POOL_DOMAIN)}>`,
    ]
    for (const r of refused) {
      const reply = await rcpt(r)
      assert.match(reply, /^550 5\.7\.1 /, `${r} → ${reply}`)
    }
    // smtp-server itself refuses a quoted local part as bad syntax, before our policy sees it.
    assert.match(await rcpt(`<"victim@elsewhere.example"@${POOL_DOMAIN}>`), /^(550 5\.7\.1|501) /)
    assert.match(await rcpt(`<"postmaster"@${POOL_DOMAIN}>`), /^(550 5\.7\.1|501) /)
    const metrics = await service.ctx.metrics.getSingleMetricAsString('atmos_fbl_smtp_refused_total')
    assert.match(metrics, /reason="foreign_domain"[^}]*\} [1-9]/)
    assert.match(metrics, /reason="bad_token"[^}]*\} 2/)
  })

  it('stores an accepted message before the 250, with its envelope', async () => {
    const to = goodVerp()
    const transport = createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true })
    const info = await transport.sendMail({
      envelope: { from: '', to: [to] },
      raw: 'From: MAILER-DAEMON@remote.example\r\nTo: x\r\nSubject: bounce\r\n\r\nbody\r\n',
    })
    transport.close()
    const id = Number(/stored as (\d+)/.exec(info.response)?.[1])
    assert.ok(id > 0, info.response)
    const [row] = await h.db.select().from(inboundMessages)
    assert.equal(row?.id, id)
    assert.equal(row?.mailFrom, '')
    assert.deepEqual(row?.rcptTo, [to])
    assert.equal(row?.state, 'received')
    assert.equal(row?.remoteAddress?.endsWith('127.0.0.1'), true)
    assert.match(row!.raw.toString(), /Subject: bounce/)
    const job = await h.redis.exists(`${h.prefix}:process-inbound:inbound-${id}`)
    assert.equal(job, 1, 'processInbound enqueued')
  })

  it('refuses an oversize message with 552 5.3.4 and stores nothing', async () => {
    const before = (await h.db.select().from(inboundMessages)).length
    const big = `Subject: big\r\n\r\n${'x'.repeat(100).concat('\r\n').repeat(1000)}`
    const replies = await smtpDialog(port, [
      'EHLO client.example',
      'MAIL FROM:<>',
      `RCPT TO:<abuse@${POOL_DOMAIN}>`,
      'DATA',
      `${big}\r\n.`,
    ])
    assert.match(replies[4]!, /^552 5\.3\.4 /)
    const declared = await smtpDialog(port, ['EHLO client.example', 'MAIL FROM:<> SIZE=10000000'])
    assert.match(declared[1]!, /^552 /)
    assert.equal((await h.db.select().from(inboundMessages)).length, before)
  })

  it('offers STARTTLS only when a certificate is configured', async () => {
    const plain = await smtpDialog(port, ['STARTTLS'])
    assert.match(plain[0]!, /^5\d\d /)
    const { certFile, keyFile } = testCertificate()
    const tls = await startService({
      ...h.env,
      ATMOS_FBL_INGEST_ROLES: 'smtp',
      ATMOS_FBL_INGEST_SMTP_TLS_CERT_FILE: certFile,
      ATMOS_FBL_INGEST_SMTP_TLS_KEY_FILE: keyFile,
    })
    try {
      const transport = createTransport({
        host: '127.0.0.1',
        port: tls.ctx.listener!.address!.port,
        secure: false,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
      })
      const info = await transport.sendMail({
        envelope: { from: '', to: [`postmaster@${POOL_DOMAIN}`] },
        raw: 'Subject: over TLS\r\n\r\nhi\r\n',
      })
      transport.close()
      assert.match(info.response, /^250 /)
    } finally {
      await tls.destroy()
    }
  })
})
