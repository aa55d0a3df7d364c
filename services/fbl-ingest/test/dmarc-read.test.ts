import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fblIngestSection } from '../src/config.ts'
import { type ReportLimits, ReportRefused, readReport } from '../src/dmarc/read.ts'
import {
  googleReport,
  gzip,
  microsoftReport,
  plainXmlReport,
  type ReportSpec,
  reportMail,
  reportXml,
  zip,
} from './dmarc-reports.ts'

// Reading a report out of the mail that carries it, within the limits: the shapes receivers
// send, and what an attacker would send instead. Every refusal is a ReportRefused with a
// reason the quarantine keeps; none takes long or much memory.

const LIMITS: ReportLimits = fblIngestSection.parse({}).dmarc
const TO = 'dmarc@pool.example'
const BEGIN = Date.UTC(2026, 11, 1) / 1000

const spec = (over: Partial<ReportSpec> = {}): ReportSpec => ({
  org: 'google.com',
  email: 'noreply-dmarc-support@google.com',
  reportId: '17318234567890123456',
  domain: 'member.example',
  begin: BEGIN,
  rows: [
    { ip: '192.0.2.25', count: 12, headerFrom: 'member.example' },
    { ip: '203.0.113.9', count: 3, dkim: 'fail', spf: 'fail', disposition: 'quarantine', headerFrom: 'member.example' },
  ],
  ...over,
})

const raw = (s: string) => Buffer.from(s.replace(/\r?\n/g, '\r\n'))

async function refused(message: string | Buffer, limits: ReportLimits = LIMITS): Promise<string> {
  const started = Date.now()
  const err = await readReport(Buffer.isBuffer(message) ? message : raw(message), limits).then(
    () => assert.fail('read, not refused'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof ReportRefused, `not a refusal: ${String(err)}`)
  // A bound, not a measure: a bomb that was inflated in full would take far longer.
  assert.ok(Date.now() - started < 20_000)
  return err.reason
}

function xmlMail(xml: string | Buffer, contentType = 'text/xml'): string {
  return reportMail({
    from: 'dmarc@reporter.example',
    to: TO,
    subject: 'Report Domain: member.example',
    attachment: { contentType, name: 'r.xml', data: Buffer.from(xml) },
  })
}

function zipMail(data: Buffer): string {
  return reportMail({
    from: 'd@r.example',
    to: TO,
    subject: 'r',
    attachment: { contentType: 'application/zip', name: 'r.zip', data },
  })
}

describe('DMARC reports as receivers send them', () => {
  it('reads a Google-style zip, the whole message its one part', async () => {
    const r = await readReport(raw(googleReport(spec(), TO)), LIMITS)
    assert.equal(r.report_metadata.org_name, 'google.com')
    assert.equal(r.report_metadata.report_id, '17318234567890123456')
    assert.equal(r.report_metadata.date_range.begin, BEGIN)
    assert.equal(r.policy_published.domain, 'member.example')
    assert.equal(r.record.length, 2)
    assert.deepEqual(r.record[1]!.row, {
      source_ip: '203.0.113.9',
      count: 3,
      policy_evaluated: { disposition: 'quarantine', dkim: 'fail', spf: 'fail' },
    })
    assert.deepEqual(r.record[0]!.auth_results.dkim, [
      { domain: 'member.example', selector: 'atmos1r', result: 'pass' },
    ])
  })

  it('reads a Microsoft-style gzip with its namespaces, version and envelope_to', async () => {
    const s = spec({ org: 'Enterprise Outlook', email: 'dmarcreport@microsoft.com', reportId: 'a1b2c3d4e5' })
    const r = await readReport(raw(microsoftReport(s, TO)), LIMITS)
    assert.equal(r.report_metadata.org_name, 'Enterprise Outlook')
    assert.equal(r.record.length, 2)
    assert.equal(r.record[0]!.auth_results.spf[0]!.domain, 'member.example')
  })

  it('reads plain XML sent as text/xml or as octet-stream named .xml, and a single record', async () => {
    const s = spec({
      org: 'mail.small.example',
      rows: [{ ip: '2001:db8::25', count: 1, headerFrom: 'MEMBER.example.' }],
    })
    for (const type of ['text/xml', 'application/octet-stream']) {
      const r = await readReport(raw(plainXmlReport(s, TO, type)), LIMITS)
      assert.equal(r.record.length, 1, type)
      assert.equal(r.record[0]!.row.source_ip, '2001:db8::25')
      assert.equal(r.record[0]!.identifiers.header_from, 'member.example', 'lower-cased, no trailing dot')
    }
  })

  it('reads a report without records', async () => {
    const r = await readReport(raw(xmlMail(reportXml(spec({ rows: [] })))), LIMITS)
    assert.equal(r.record.length, 0)
  })
})

describe('hostile DMARC reports are refused with a reason', () => {
  it('a zip bomb: a ratio past the limit, a declared size past the limit, a size that lies', async () => {
    const zeros = Buffer.alloc(20 * 1024 * 1024)
    assert.match(await refused(zipMail(zip([{ name: 'r.xml', data: zeros }]))), /expands \d+ times \(limit 200\)/)
    const huge = Buffer.alloc(60 * 1024 * 1024)
    assert.match(await refused(zipMail(zip([{ name: 'r.xml', data: huge }]))), /declares 62914560 bytes/)
    // It says 4 kB; validateEntrySizes stops the stream at what it declared.
    assert.match(
      await refused(zipMail(zip([{ name: 'r.xml', data: huge, declaredSize: 4096 }]))),
      /unreadable zip entry|expands/,
    )
  })

  it('a zip with no report, two reports or a thousand entries', async () => {
    const xml = Buffer.from(reportXml(spec()))
    assert.match(await refused(zipMail(zip([{ name: 'readme.txt', data: xml }]))), /0 \.xml entries/)
    assert.match(
      await refused(
        zipMail(
          zip([
            { name: 'a.xml', data: xml },
            { name: 'b.xml', data: xml },
          ]),
        ),
      ),
      /2 \.xml entries/,
    )
    const many = Array.from({ length: 1000 }, (_, i) => ({ name: `f${i}.txt`, data: Buffer.from('x'), stored: true }))
    assert.match(await refused(zipMail(zip(many))), /1000 entries \(at most 16\)/)
    assert.match(
      await refused(zipMail(Buffer.concat([Buffer.from('PK\u0003\u0004'), Buffer.alloc(200, 7)]))),
      /unreadable zip/,
    )
  })

  it('a gzip bomb and a broken gzip', async () => {
    const bomb = gzip(Buffer.alloc(60 * 1024 * 1024))
    const mail = (data: Buffer) =>
      reportMail({
        from: 'd@r.example',
        to: TO,
        subject: 'r',
        attachment: { contentType: 'application/gzip', name: 'r.xml.gz', data },
      })
    assert.match(await refused(mail(bomb)), /gzip expands past/)
    assert.match(await refused(mail(gzip(reportXml(spec())).subarray(0, 60))), /unreadable gzip/)
  })

  it('an attachment over the compressed limit', async () => {
    const limits = { ...LIMITS, maxCompressed: 2048 }
    const big = gzip(
      Buffer.from(
        reportXml(
          spec({
            rows: Array.from({ length: 400 }, (_, i) => ({
              ip: `198.51.100.${i % 250}`,
              count: i,
              headerFrom: 'member.example',
            })),
          }),
        ),
      ),
    )
    assert.ok(big.length > 2048)
    const mail = reportMail({
      from: 'd@r.example',
      to: TO,
      subject: 'r',
      attachment: { contentType: 'application/gzip', name: 'r.gz', data: big },
    })
    assert.match(await refused(mail, limits), /exceeds the limit of 2048/)
  })

  it('XXE and the billion laughs: no DTD is read at all', async () => {
    const base = reportXml(spec())
    const xxe = base
      .replace('<feedback>', '<!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<feedback>')
      .replace('<org_name>google.com</org_name>', '<org_name>&xxe;</org_name>')
    assert.match(await refused(xmlMail(xxe)), /DTD or entity declarations/)
    const laughs = [
      '<?xml version="1.0"?>',
      '<!DOCTYPE lolz [',
      ' <!ENTITY lol "lol">',
      ...Array.from({ length: 9 }, (_, i) => ` <!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`),
      ']>',
      '<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>',
    ].join('\n')
    assert.match(await refused(xmlMail(laughs)), /DTD or entity declarations/)
    // XML's own entities are read; one without a declaration is text, never expanded nor fetched.
    const named = base.replace(
      '<org_name>google.com</org_name>',
      '<org_name>AT&amp;T &lt;b&gt; &#65; &xxe; &nbsp;</org_name>',
    )
    const r = await readReport(raw(xmlMail(named)), LIMITS)
    // (Character references are kept as written: the page escapes whatever it shows.)
    assert.equal(r.report_metadata.org_name, 'AT&T <b> &#65; &xxe; &nbsp;')
  })

  it('more records than allowed, counted before any tree is built', async () => {
    const rows = Array.from({ length: 51 }, (_, i) => ({
      ip: `198.51.100.${i}`,
      count: 1,
      headerFrom: 'member.example',
    }))
    const limits = { ...LIMITS, maxRows: 50 }
    assert.match(await refused(xmlMail(reportXml(spec({ rows }))), limits), /51 records \(at most 50\)/)
    const ok = await readReport(raw(xmlMail(reportXml(spec({ rows: rows.slice(0, 50) })))), limits)
    assert.equal(ok.record.length, 50)
  })

  it('XML nested far deeper than any report', async () => {
    const deep = `<feedback><report_metadata>${'<a>'.repeat(200_000)}${'</a>'.repeat(200_000)}</report_metadata></feedback>`
    assert.match(await refused(xmlMail(deep)), /malformed XML: Maximum nested tags exceeded/)
  })

  it('malformed XML, the wrong root, and rows that break the shape', async () => {
    const base = reportXml(spec())
    assert.match(await refused(xmlMail(base.slice(0, base.length - 40))), /malformed XML/)
    assert.match(await refused(xmlMail('<html><body>hi</body></html>')), /no <feedback> root/)
    assert.match(await refused(xmlMail(base.replace(/<report_id>[^<]*<\/report_id>/, ''))), /report_id/)
    assert.match(await refused(xmlMail(base.replace('192.0.2.25', '192.0.2.256'))), /source_ip: an IP address/)
    assert.match(await refused(xmlMail(base.replace('<count>12</count>', '<count>-12</count>'))), /count/)
    assert.match(
      await refused(xmlMail(base.replace(`<end>${BEGIN + 86_399}</end>`, `<end>${BEGIN + 90 * 86_400}</end>`))),
      /longer than 31 days/,
    )
    assert.match(
      await refused(xmlMail(base.replace('<domain>member.example</domain>', '<domain>bad domain!</domain>'))),
      /policy_published\.domain/,
    )
  })

  it('mail without a report attachment', async () => {
    const mail = 'From: a@b.example\r\nTo: dmarc@pool.example\r\nSubject: hello\r\n\r\nJust text.\r\n'
    assert.match(await refused(mail), /no report attachment/)
    const pdf = reportMail({
      from: 'a@b.example',
      to: TO,
      subject: 'x',
      attachment: { contentType: 'application/pdf', name: 'r.pdf', data: Buffer.from('%PDF') },
    })
    assert.match(await refused(pdf), /attachments: application\/pdf/)
  })
})
