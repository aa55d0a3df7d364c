import type { EnrollConfig } from './config.ts'

// Step 6 of the wizard: how to use the SMTP credential issued for a domain (shown once).
// The PDS reads PDS_EMAIL_SMTP_URL and hands it to nodemailer's createTransport
// (@atproto/pds dist/context.js): `smtp://` connects in the clear and upgrades with STARTTLS,
// `smtps://` speaks TLS from the first byte; `requireTLS=true` makes nodemailer refuse to
// send when STARTTLS is not offered (the relay refuses AUTH without TLS anyway). The user
// and password sit in the URL's userinfo, percent-encoded (nodemailer decodes them).

export type SmtpSettings = {
  host: string
  port: number
  /** `starttls` on the submission port; `tls` on an implicit-TLS port. */
  security: 'starttls' | 'tls'
  username: string
  /** Shown once. */
  password: string
  /** The line for the PDS's environment (pds.env). */
  pdsEnv: string[]
  /** Settings for any other application, one `key: value` a line. */
  generic: string[]
}

export function smtpSettings(
  config: Pick<EnrollConfig, 'relayHost' | 'relayPort' | 'relayTlsPort'>,
  credential: { username: string; password: string; fromAddress?: string | undefined },
): SmtpSettings {
  const host = config.relayHost
  const implicit = config.relayTlsPort > 0
  const port = implicit ? config.relayTlsPort : config.relayPort
  const auth = `${encodeURIComponent(credential.username)}:${encodeURIComponent(credential.password)}`
  const url = implicit ? `smtps://${auth}@${host}:${port}/` : `smtp://${auth}@${host}:${port}/?requireTLS=true`
  const from = credential.fromAddress ?? `noreply@${credential.username}`
  return {
    host,
    port,
    security: implicit ? 'tls' : 'starttls',
    username: credential.username,
    password: credential.password,
    pdsEnv: [`PDS_EMAIL_SMTP_URL=${url}`, `PDS_EMAIL_FROM_ADDRESS=${from}`],
    generic: [
      `SMTP host: ${host}`,
      `SMTP port: ${port}`,
      implicit
        ? 'Security: TLS from the start (implicit TLS, "SSL/TLS")'
        : 'Security: STARTTLS, required (never plain text)',
      'Authentication: PLAIN or LOGIN',
      `Username: ${credential.username}`,
      `Password: ${credential.password}`,
      `From: an address at ${credential.username} (or a subdomain of it)`,
    ],
  }
}
