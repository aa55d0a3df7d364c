import { crc32, deflateRawSync, gzipSync } from 'node:zlib'

// DMARC aggregate reports shaped as the big receivers send them (RFC 7489 Appendix C), and
// the hostile variants: the XML, a zip and gzip writer, and the mail that carries them.

export type ReportRow = {
  ip: string
  count: number
  disposition?: string
  dkim?: 'pass' | 'fail'
  spf?: 'pass' | 'fail'
  headerFrom: string
  envelopeFrom?: string
  dkimAuth?: { domain: string; selector?: string; result: string }[]
  spfAuth?: { domain: string; result: string }[]
}

export type ReportSpec = {
  org: string
  email: string
  reportId: string
  domain: string
  begin: number
  end?: number
  rows: ReportRow[]
  /** Microsoft writes a namespace-qualified root, a <version> and envelope_to. */
  style?: 'google' | 'microsoft' | 'plain'
}

/** Text as XML carries it. */
const x = (v: string | number) => String(v).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export function reportXml(spec: ReportSpec): string {
  const end = spec.end ?? spec.begin + 86_399
  const ms = spec.style === 'microsoft'
  const records = spec.rows
    .map(
      (r) => `  <record>
    <row>
      <source_ip>${r.ip}</source_ip>
      <count>${r.count}</count>
      <policy_evaluated>
        <disposition>${r.disposition ?? 'none'}</disposition>
        <dkim>${r.dkim ?? 'pass'}</dkim>
        <spf>${r.spf ?? 'pass'}</spf>
      </policy_evaluated>
    </row>
    <identifiers>
${ms ? `      <envelope_to>outlook.com</envelope_to>\n` : ''}${r.envelopeFrom ? `      <envelope_from>${x(r.envelopeFrom)}</envelope_from>\n` : ''}      <header_from>${x(r.headerFrom)}</header_from>
    </identifiers>
    <auth_results>
${(r.dkimAuth ?? [{ domain: r.headerFrom, selector: 'atmos1r', result: r.dkim ?? 'pass' }])
  .map(
    (d) =>
      `      <dkim>\n        <domain>${x(d.domain)}</domain>\n${d.selector ? `        <selector>${x(d.selector)}</selector>\n` : ''}        <result>${d.result}</result>\n      </dkim>`,
  )
  .join('\n')}
${(r.spfAuth ?? [{ domain: r.envelopeFrom ?? r.headerFrom, result: r.spf ?? 'pass' }])
  .map(
    (s) =>
      `      <spf>\n        <domain>${x(s.domain)}</domain>\n${ms ? '        <scope>mfrom</scope>\n' : ''}        <result>${s.result}</result>\n      </spf>`,
  )
  .join('\n')}
    </auth_results>
  </record>`,
    )
    .join('\n')
  return `<?xml version="1.0"${ms ? '' : ' encoding="UTF-8" '}?>
<feedback${ms ? ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"' : ''}>
${ms ? '  <version>1.0</version>\n' : ''}  <report_metadata>
    <org_name>${x(spec.org)}</org_name>
    <email>${x(spec.email)}</email>
    <extra_contact_info>https://support.example/dmarc</extra_contact_info>
    <report_id>${x(spec.reportId)}</report_id>
    <date_range>
      <begin>${spec.begin}</begin>
      <end>${end}</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>${x(spec.domain)}</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>quarantine</p>
    <sp>quarantine</sp>
    <pct>100</pct>
    <np>quarantine</np>
  </policy_published>
${records}
</feedback>
`
}

export type ZipEntry = {
  name: string
  data: Buffer
  /** Lies written into the headers, for archives that claim less than they hold. */
  declaredSize?: number
  stored?: boolean
}

/** A zip archive (deflate or stored entries, local headers and a central directory). */
export function zip(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8')
    const body = e.stored ? e.data : deflateRawSync(e.data, { level: 9 })
    const crc = crc32(e.data)
    const size = e.declaredSize ?? e.data.length
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4)
    local.writeUInt16LE(0x0800, 6) // UTF-8 names
    local.writeUInt16LE(e.stored ? 0 : 8, 8)
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(body.length, 18)
    local.writeUInt32LE(size, 22)
    local.writeUInt16LE(name.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4)
    central.writeUInt16LE(20, 6)
    central.writeUInt16LE(0x0800, 8)
    central.writeUInt16LE(e.stored ? 0 : 8, 10)
    central.writeUInt32LE(crc, 16)
    central.writeUInt32LE(body.length, 20)
    central.writeUInt32LE(size, 24)
    central.writeUInt16LE(name.length, 28)
    central.writeUInt32LE(offset, 42)
    locals.push(local, name, body)
    centrals.push(central, name)
    offset += 30 + name.length + body.length
  }
  const dir = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(entries.length, 8)
  end.writeUInt16LE(entries.length, 10)
  end.writeUInt32LE(dir.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, dir, end])
}

export const gzip = (data: string | Buffer) => gzipSync(data, { level: 9 })

/** The report's file name as receivers write it: `receiver!domain!begin!end`. */
export function fileName(spec: ReportSpec, ext: string): string {
  return `${x(spec.org)}!${x(spec.domain)}!${spec.begin}!${spec.end ?? spec.begin + 86_399}.${ext}`
}

/** The mail a receiver sends to the `rua=` address, the report attached. */
export function reportMail(opts: {
  from: string
  to: string
  subject: string
  attachment: { contentType: string; name: string; data: Buffer }
  /** Google sends the attachment as the whole message; others a multipart with a text part. */
  singlePart?: boolean
}): string {
  const b64 = (opts.attachment.data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')
  const head = [
    `From: ${opts.from}`,
    `To: ${opts.to}`,
    `Subject: ${opts.subject}`,
    'Date: Tue, 1 Dec 2026 10:00:00 +0000',
    `Message-ID: <${Math.random().toString(36).slice(2)}@reports.example>`,
    'MIME-Version: 1.0',
  ]
  const part = [
    `Content-Type: ${opts.attachment.contentType}; name="${opts.attachment.name}"`,
    `Content-Disposition: attachment; filename="${opts.attachment.name}"`,
    'Content-Transfer-Encoding: base64',
    '',
    b64,
  ]
  if (opts.singlePart) return [...head, ...part, ''].join('\r\n')
  const boundary = 'report-boundary-7489'
  return [
    ...head,
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'This is an aggregate report (RFC 7489). Do not reply.',
    '',
    `--${boundary}`,
    ...part,
    `--${boundary}--`,
    '',
  ].join('\r\n')
}

/** Google: a zip, the whole message its one part. */
export function googleReport(spec: ReportSpec, to: string): string {
  return reportMail({
    from: 'noreply-dmarc-support@google.com',
    to,
    subject: `Report domain: ${x(spec.domain)} Submitter: google.com Report-ID: ${x(spec.reportId)}`,
    attachment: {
      contentType: 'application/zip',
      name: fileName(spec, 'zip'),
      data: zip([{ name: fileName(spec, 'xml'), data: Buffer.from(reportXml({ ...spec, style: 'google' })) }]),
    },
    singlePart: true,
  })
}

/** Microsoft: a gzip beside a text part. */
export function microsoftReport(spec: ReportSpec, to: string): string {
  return reportMail({
    from: 'dmarcreport@microsoft.com',
    to,
    subject: `Report Domain: ${x(spec.domain)} Submitter: ${x(spec.org)} Report-ID: <${x(spec.reportId)}>`,
    attachment: {
      contentType: 'application/gzip',
      name: fileName(spec, 'xml.gz'),
      data: gzip(reportXml({ ...spec, style: 'microsoft' })),
    },
  })
}

/** A small receiver: the XML as it is, as application/octet-stream that only its name tells apart. */
export function plainXmlReport(spec: ReportSpec, to: string, contentType = 'application/octet-stream'): string {
  return reportMail({
    from: `dmarc@${x(spec.org)}`,
    to,
    subject: `Report Domain: ${x(spec.domain)} Submitter: ${x(spec.org)} Report-ID: ${x(spec.reportId)}`,
    attachment: { contentType, name: fileName(spec, 'xml'), data: Buffer.from(reportXml({ ...spec, style: 'plain' })) },
  })
}
