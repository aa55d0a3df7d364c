import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { dmarcReportRows, dmarcReports, inboundMessages, quarantinedReports } from '@atmos/db'
import { reverseName } from '@atmos/testkit'
import { asc, eq } from 'drizzle-orm'
import { dkimSign } from 'mailauth'
import { fblIngestConfigSchema } from '../src/config.ts'
import { purgeDmarcReports } from '../src/dmarc/retention.ts'
import type { FblIngestService } from '../src/service.ts'
import { googleReport, microsoftReport, plainXmlReport, type ReportSpec, reportMail, zip } from './dmarc-reports.ts'
import {
  addDomain,
  addMember,
  type Harness,
  harness,
  POOL_DOMAIN,
  sendRaw,
  smtpDialog,
  startService,
  type TestMember,
  waitFor,
} from './helpers.ts'

// DMARC aggregate reports end to end: over SMTP to the report mailbox, stored before the
// 250, read by the worker into dmarc_reports and dmarc_report_rows, attributed to the
// member's domain, its pool rows told from everyone else's, reverse names from the
// configured DNS; duplicates, strangers' domains and bombs as they must end.

const MAILBOX = `dmarc@${POOL_DOMAIN}`
const BEGIN = Date.UTC(2026, 11, 1) / 1000

let h: Harness
let service: FblIngestService
let port: number
let member: TestMember

before(async () => {
  h = await harness('fbl-dmarc')
  member = await addMember(h.db)
  await addDomain(h.db, member, `other-${member.domain}`)
  h.dns.set(reverseName('192.0.2.25'), { PTR: ['relay.pool.example'] })
  h.dns.set(reverseName('203.0.113.9'), { PTR: ['mail.spoofer.example'] })
  h.dns.set(reverseName('198.51.100.7'), { behaviour: 'timeout' })
  service = await startService({
    ...h.env,
    ATMOS_FBL_INGEST_DMARC_POOL_IPS: '192.0.2.0/24,2001:db8:25::/48',
    ATMOS_FBL_INGEST_DMARC_REVERSE_TIMEOUT: '300ms',
  })
  port = service.ctx.listener!.address!.port
})
after(async () => {
  await service?.destroy()
  await h?.close()
})

const spec = (over: Partial<ReportSpec> = {}): ReportSpec => ({
  org: 'google.com',
  email: 'noreply-dmarc-support@google.com',
  reportId: `g-${Math.random().toString(36).slice(2)}`,
  domain: member.domain,
  begin: BEGIN,
  rows: [
    { ip: '192.0.2.25', count: 40, headerFrom: member.domain },
    {
      ip: '203.0.113.9',
      count: 7,
      dkim: 'fail',
      spf: 'fail',
      disposition: 'quarantine',
      headerFrom: member.domain,
      dkimAuth: [{ domain: 'spoofer.example', selector: 's', result: 'pass' }],
      spfAuth: [{ domain: 'spoofer.example', result: 'pass' }],
    },
    { ip: '198.51.100.7', count: 2, headerFrom: member.domain },
  ],
  ...over,
})

/** Sends to the report mailbox and waits for the worker to finish the stored message. */
async function deliver(message: string) {
  const reply = await sendRaw(port, 'reports@receiver.example', [MAILBOX], message)
  assert.match(reply, /^250 2\.0\.0 Ok: stored as \d+/)
  const id = Number(/stored as (\d+)/.exec(reply)![1])
  return waitFor(
    `inbound ${id} processed`,
    async () => {
      const [row] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, id))
      return row && row.state !== 'received' ? row : undefined
    },
    60_000,
  )
}

async function reportOf(reportId: string) {
  const found = await h.db.select().from(dmarcReports).where(eq(dmarcReports.reportId, reportId))
  const report = found[0]
  const rows = report
    ? await h.db
        .select()
        .from(dmarcReportRows)
        .where(eq(dmarcReportRows.reportId, report.id))
        .orderBy(asc(dmarcReportRows.sourceIp))
    : []
  return { found, report, rows }
}

describe('DMARC aggregate reports over SMTP', () => {
  it('accepts the report mailbox at RCPT, and only at the pool', async () => {
    const replies = await smtpDialog(port, ['EHLO r.example', 'MAIL FROM:<>', `RCPT TO:<${MAILBOX}>`])
    assert.match(replies[2]!, /^250 /)
    // At a member's domain it is an ordinary mailbox of that domain: without a forward-to, none.
    const other = await smtpDialog(port, ['EHLO r.example', 'MAIL FROM:<>', `RCPT TO:<dmarc@${member.domain}>`])
    assert.match(other[2]!, /^550 5\.1\.1 /)
    const foreign = await smtpDialog(port, ['EHLO r.example', 'MAIL FROM:<>', 'RCPT TO:<dmarc@elsewhere.example>'])
    assert.match(foreign[2]!, /^550 5\.7\.1 /)
  })

  it('stores a Google-style zip: pool rows apart, reverse names, the member domain', async () => {
    const s = spec()
    const inbound = await deliver(googleReport(s, MAILBOX))
    assert.equal(inbound.state, 'processed')
    assert.equal(inbound.kind, 'dmarc')
    const { report, rows } = await reportOf(s.reportId)
    assert.ok(report)
    assert.equal(report.memberId, member.id)
    assert.equal(report.domainId, member.domainId)
    assert.equal(report.orgName, 'google.com')
    assert.equal(report.policyDomain, member.domain)
    assert.equal(report.dateBegin.toISOString(), '2026-12-01T00:00:00.000Z')
    assert.equal(report.rows, 3)
    assert.equal(report.verifiedSender, null, 'an unsigned report is not taken for google.com')
    assert.deepEqual(
      rows.map((r) => [r.sourceIp, r.poolIp, r.reverseName, r.count, r.disposition, r.dkimAligned, r.spfAligned]),
      [
        ['192.0.2.25', true, 'relay.pool.example', 40, 'none', 'pass', 'pass'],
        ['198.51.100.7', false, null, 2, 'none', 'pass', 'pass'],
        ['203.0.113.9', false, 'mail.spoofer.example', 7, 'quarantine', 'fail', 'fail'],
      ],
    )
    assert.equal(rows[2]!.dkimAuth, 'spoofer.example/s:pass')
    assert.equal(rows[2]!.spfAuth, 'spoofer.example:pass')
  })

  it('stores a Microsoft-style gzip: a subdomain of the member kept, another domain’s row dropped', async () => {
    const s = spec({
      org: 'Enterprise Outlook',
      email: 'dmarcreport@microsoft.com',
      rows: [
        { ip: '2001:db8:25::1', count: 5, headerFrom: `news.${member.domain}` },
        { ip: '203.0.113.50', count: 9, headerFrom: 'unrelated.example' },
      ],
    })
    await deliver(microsoftReport(s, MAILBOX))
    const { report, rows } = await reportOf(s.reportId)
    assert.equal(report?.memberId, member.id)
    assert.equal(report?.rows, 1)
    assert.equal(report?.rowsElsewhere, 1)
    assert.deepEqual(
      rows.map((r) => [r.sourceIp, r.poolIp, r.headerFrom]),
      [['2001:db8:25::1', true, `news.${member.domain}`]],
    )
  })

  it('stores plain XML sent as octet-stream, and attributes each domain of a member to itself', async () => {
    const domain = `other-${member.domain}`
    const s = spec({ org: 'mail.small.example', domain, rows: [{ ip: '192.0.2.26', count: 1, headerFrom: domain }] })
    await deliver(plainXmlReport(s, MAILBOX))
    const { report, rows } = await reportOf(s.reportId)
    assert.equal(report?.memberId, member.id)
    assert.notEqual(report?.domainId, member.domainId)
    assert.equal(rows.length, 1)
  })

  it('stores a report sent twice once', async () => {
    const s = spec({ reportId: 'resent-1' })
    await deliver(googleReport(s, MAILBOX))
    const again = await deliver(googleReport(s, MAILBOX))
    assert.equal(again.state, 'processed')
    const { found, rows } = await reportOf('resent-1')
    assert.equal(found.length, 1)
    assert.equal(rows.length, 3)
    const metrics = await service.ctx.metrics.getSingleMetricAsString('atmos_fbl_dmarc_reports_total')
    assert.match(metrics, /outcome="duplicate"[^}]*\} 1/)
  })

  it('records a report about a domain no member holds, and keeps none of its rows', async () => {
    const s = spec({
      domain: 'stranger.example',
      rows: [{ ip: '203.0.113.1', count: 4, headerFrom: 'stranger.example' }],
    })
    await deliver(googleReport(s, MAILBOX))
    const { report, rows } = await reportOf(s.reportId)
    assert.equal(report?.memberId, null)
    assert.equal(report?.rows, 0)
    assert.equal(report?.rowsElsewhere, 1)
    assert.equal(rows.length, 0)
  })

  it('quarantines a zip bomb and malformed XML with the reason, and keeps working', async () => {
    const bomb = reportMail({
      from: 'd@r.example',
      to: MAILBOX,
      subject: 'r',
      attachment: {
        contentType: 'application/zip',
        name: 'r.zip',
        data: zip([{ name: 'r.xml', data: Buffer.alloc(30 * 1024 * 1024) }]),
      },
    })
    const broken = reportMail({
      from: 'd@r.example',
      to: MAILBOX,
      subject: 'r',
      attachment: { contentType: 'text/xml', name: 'r.xml', data: Buffer.from('<feedback><report_metadata>') },
    })
    for (const [message, reason] of [
      [bomb, /^DMARC report: zip entry expands \d+ times/],
      [broken, /^DMARC report: malformed XML/],
    ] as const) {
      const row = await deliver(message)
      assert.equal(row.state, 'quarantined')
      assert.equal(row.kind, 'dmarc')
      const [q] = await h.db.select().from(quarantinedReports).where(eq(quarantinedReports.inboundId, row.id))
      assert.match(q!.reason, reason)
    }
    // The next report is read as usual.
    const s = spec()
    await deliver(googleReport(s, MAILBOX))
    assert.equal((await reportOf(s.reportId)).rows.length, 3)
  })

  it('names the reporter as authenticated only when its mail passed DMARC at receipt; the pool’s own reports go to operators', async () => {
    const reporter = 'reporter.test'
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const der = publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
    h.dns.set(`r1._domainkey.${reporter}`, { TXT: [`v=DKIM1; k=rsa; p=${der}`.match(/.{1,255}/g)!] })
    h.dns.set(`_dmarc.${reporter}`, { TXT: ['v=DMARC1; p=reject'] })
    const s = spec({ org: reporter, email: `dmarc@${reporter}` })
    const message = plainXmlReport(s, MAILBOX).replace(/\r?\n/g, '\r\n')
    const key = {
      signingDomain: reporter,
      selector: 'r1',
      privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    }
    const signed = await dkimSign(message, { ...key, canonicalization: 'relaxed/relaxed', signatureData: [key] })
    await deliver(signed.signatures + message)
    assert.equal((await reportOf(s.reportId)).report?.verifiedSender, reporter)
    // The same mail unsigned claims the same sender: not taken for it.
    const unsigned = spec({ org: reporter, email: `dmarc@${reporter}` })
    await deliver(plainXmlReport(unsigned, MAILBOX))
    assert.equal((await reportOf(unsigned.reportId)).report?.verifiedSender, null)

    // A report about the pool's own domain (its DMARC record names the same mailbox) is the
    // operators': forwarded as operator mail when authenticated, kept for them otherwise.
    const poolSpec = spec({
      org: reporter,
      email: `dmarc@${reporter}`,
      domain: POOL_DOMAIN,
      rows: [{ ip: '192.0.2.25', count: 9, headerFrom: POOL_DOMAIN }],
    })
    const poolMessage = plainXmlReport(poolSpec, MAILBOX).replace(/\r?\n/g, '\r\n')
    const poolSigned = await dkimSign(poolMessage, {
      ...key,
      canonicalization: 'relaxed/relaxed',
      signatureData: [key],
    })
    const forwarded = await deliver(poolSigned.signatures + poolMessage)
    assert.equal(forwarded.state, 'forwarded')
    assert.ok(forwarded.forwardedMessageId)
    assert.equal((await reportOf(poolSpec.reportId)).found.length, 0, 'not a member report')
    // Unsigned, its From domain's DMARC (p=reject) fails: kept, as operator mail would be.
    const forged = spec({ org: reporter, email: `dmarc@${reporter}`, domain: POOL_DOMAIN, rows: [] })
    const kept = await deliver(plainXmlReport(forged, MAILBOX))
    assert.equal(kept.state, 'quarantined')
    const [q] = await h.db.select().from(quarantinedReports).where(eq(quarantinedReports.inboundId, kept.id))
    assert.match(q!.reason, /^DMARC fail for its From domain reporter\.test: kept, not forwarded/)
  })

  it('deletes reports past the retention with their rows, in bounded batches', async () => {
    const old = spec({ reportId: 'old-1', begin: BEGIN - 200 * 86_400 })
    await deliver(googleReport(old, MAILBOX))
    const { report } = await reportOf('old-1')
    assert.ok(report)
    const before = await h.db.select().from(dmarcReports)
    assert.equal(await purgeDmarcReports(h.db, 90 * 86_400_000, 1, 10), 1)
    assert.equal((await reportOf('old-1')).found.length, 0)
    assert.equal((await h.db.select().from(dmarcReportRows).where(eq(dmarcReportRows.reportId, report.id))).length, 0)
    assert.equal((await h.db.select().from(dmarcReports)).length, before.length - 1, 'recent reports stay')
  })

  it('refuses a configuration that gives the report mailbox to operators too', () => {
    assert.throws(
      () =>
        loadConfig(fblIngestConfigSchema, {
          env: { ...h.env, ATMOS_FBL_INGEST_OPERATOR_MAILBOXES: 'postmaster,dmarc' },
        }),
      /dmarc\.mailbox[^\n]*also an operator or feedback mailbox/,
    )
    assert.throws(
      () => loadConfig(fblIngestConfigSchema, { env: { ...h.env, ATMOS_FBL_INGEST_DMARC_POOL_IPS: '192.0.2.0/33' } }),
      /poolIps/,
    )
  })
})
