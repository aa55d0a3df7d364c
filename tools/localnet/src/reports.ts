import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto'
import { dkimSign } from 'mailauth'
import { createTransport } from 'nodemailer'
import { headerBlock, type SinkEntry } from './sink.ts'
import { secretFile } from './state.ts'

// What the sink's buttons send back to the pool's inbound listener, as a mailbox provider
// would: a complaint (ARF, RFC 5965, the original attached) to the pool's feedback mailbox,
// and a late bounce (DSN, RFC 3464) to the message's VERP return path. Both are DKIM-signed
// by the sink's own domain, whose key the local DNS publishes and which the stack configures
// fbl-ingest to trust as a feedback-loop provider, so that the complaints count.

export const REPORT_SELECTOR = 'sink1'

export type ReportKey = { domain: string; selector: string; privateKey: string; publicKeyTxt: string }

/** The sink's DKIM key, made once in the state directory (0600). */
export function reportKey(secretsDir: string, domain: string): ReportKey {
  const pem = secretFile(secretsDir, 'sink-dkim.key', () =>
    generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString()
      .trim(),
  )
  const publicKey = createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' }).toString('base64')
  return { domain, selector: REPORT_SELECTOR, privateKey: pem, publicKeyTxt: `v=DKIM1; k=rsa; p=${publicKey}` }
}

const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n')

function messageId(domain: string) {
  return `<${randomBytes(12).toString('hex')}@${domain}>`
}

/** An abuse report about `entry` (its raw bytes `raw`), to the pool's feedback mailbox. */
export function complaint(entry: SinkEntry, raw: Buffer, opts: { reporterDomain: string; to: string }): string {
  const b = `arf-${randomBytes(8).toString('hex')}`
  const fromDomain = /@([^>\s]+)/.exec(entry.from)?.[1] ?? ''
  return crlf(
    [
      `From: Local network feedback loop <feedback@${opts.reporterDomain}>`,
      `To: <${opts.to}>`,
      `Subject: Abuse report: ${entry.subject.replace(/[\r\n]/g, ' ').slice(0, 200)}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: ${messageId(opts.reporterDomain)}`,
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=feedback-report; boundary="${b}"`,
      '',
      `--${b}`,
      'Content-Type: text/plain; charset=us-ascii',
      '',
      `A recipient marked a message received from ${entry.remoteAddress} as spam (local network sink).`,
      '',
      `--${b}`,
      'Content-Type: message/feedback-report',
      '',
      'Feedback-Type: abuse',
      'User-Agent: atmos-localnet-sink/1',
      'Version: 1',
      ...(entry.mailFrom ? [`Original-Mail-From: <${entry.mailFrom}>`] : []),
      ...entry.rcptTo.map((r) => `Original-Rcpt-To: <${r}>`),
      `Arrival-Date: ${new Date(entry.receivedAt).toUTCString()}`,
      `Source-IP: ${entry.remoteAddress}`,
      ...(fromDomain ? [`Reported-Domain: ${fromDomain}`] : []),
      '',
      `--${b}`,
      'Content-Type: message/rfc822',
      'Content-Disposition: inline',
      '',
    ].join('\r\n'),
  ).concat('\r\n', crlf(raw.toString('utf8')).replace(/\r\n$/, ''), `\r\n\r\n--${b}--\r\n`)
}

/** A late bounce of `entry` to its return path: the recipient does not exist after all. */
export function deliveryStatus(entry: SinkEntry, raw: Buffer, opts: { reporterDomain: string }): string {
  const b = `dsn-${randomBytes(8).toString('hex')}`
  const recipient = entry.rcptTo[0] ?? ''
  const diagnostic = `550 5.1.1 <${recipient}>: Recipient address rejected: User unknown`
  return crlf(
    [
      `From: Mail Delivery System <MAILER-DAEMON@${opts.reporterDomain}>`,
      `To: <${entry.mailFrom}>`,
      'Subject: Undelivered Mail Returned to Sender',
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: ${messageId(opts.reporterDomain)}`,
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=delivery-status; boundary="${b}"`,
      '',
      `--${b}`,
      'Content-Type: text/plain; charset=us-ascii',
      '',
      `This is the mail system at host ${opts.reporterDomain}.`,
      '',
      'Your message could not be delivered to one or more recipients.',
      '',
      `<${recipient}>: ${diagnostic}`,
      '',
      `--${b}`,
      'Content-Type: message/delivery-status',
      '',
      `Reporting-MTA: dns; ${opts.reporterDomain}`,
      `Arrival-Date: ${new Date(entry.receivedAt).toUTCString()}`,
      '',
      `Final-Recipient: rfc822; ${recipient}`,
      `Original-Recipient: rfc822; ${recipient}`,
      'Action: failed',
      'Status: 5.1.1',
      `Remote-MTA: dns; ${opts.reporterDomain}`,
      `Diagnostic-Code: smtp; ${diagnostic}`,
      '',
      `--${b}`,
      'Content-Type: text/rfc822-headers',
      '',
      headerBlock(raw),
      '',
      `--${b}--`,
      '',
    ].join('\r\n'),
  )
}

/** The message with the key's DKIM signature on top. */
export async function sign(message: string, key: ReportKey): Promise<string> {
  const signer = { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey }
  const { signatures, errors } = await dkimSign(message, {
    ...signer,
    canonicalization: 'relaxed/relaxed',
    signatureData: [signer],
  })
  if (!signatures) throw new Error(`DKIM signing failed: ${JSON.stringify(errors)}`)
  return signatures + message
}

/** Hands a report to an SMTP listener as an MTA would (STARTTLS when offered); resolves to its reply. */
export async function sendReport(
  target: { host: string; port: number },
  envelope: { from: string; to: string },
  raw: string,
  helo: string,
): Promise<string> {
  const transport = createTransport({
    host: target.host,
    port: target.port,
    secure: false,
    name: helo,
    // The pool's inbound listener locally has a self-signed certificate, or none.
    tls: { rejectUnauthorized: false },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  })
  try {
    const info = await transport.sendMail({
      envelope: { from: envelope.from || false, to: [envelope.to] },
      raw,
    } as never)
    return (info as { response: string }).response
  } finally {
    transport.close()
  }
}
