import { field, section, warmingTiersField } from '@atmos/config'
import { z } from 'zod'

/** SMTP submission (587/465) for members: TLS, AUTH, limits, warming caps. */
export const submissionSection = section({
  host: field.string('127.0.0.1'),
  port: field.port(587),
  /** Implicit TLS (465); 0 leaves it off. */
  tlsPort: field.port(0),
  /** Name in the greeting and EHLO reply. */
  hostname: field.string('localhost'),
  /** PEM certificate chain and key for STARTTLS and 465 (the start command makes a self-signed pair). */
  tlsCertFile: field.string('.state/relay/tls.crt'),
  tlsKeyFile: field.string('.state/relay/tls.key'),
  /** Largest message accepted, in bytes (advertised with SIZE and enforced: 552 5.3.4). */
  maxSize: field.int(10 * 1024 * 1024, { min: 1024 }),
  maxRecipients: field.int(50, { min: 1, max: 1000 }),
  /** Authenticated connections a member may hold at once on one relay process. */
  maxConnectionsPerMember: field.int(10, { min: 1 }),
  /** Messages one connection may submit before it must reconnect. */
  maxMessagesPerConnection: field.int(100, { min: 1 }),
  /** Connections of every kind on one relay process. */
  maxClients: field.int(1000, { min: 1 }),
  socketTimeout: field.duration('60s'),
  /** Connections one address (an IPv6 /64) may hold at once on one relay process; more get 421 4.7.0 at connect. */
  maxConnectionsPerAddress: field.int(10, { min: 1 }),
  /** From connect to a successful AUTH, however busy the client keeps the connection (a trickle resets the idle timeout). */
  loginTimeout: field.duration('30s'),
  /** A whole connection, however busy; a message being answered is answered first. */
  maxSessionLength: field.duration('10m'),
  /** Bytes a second a client must keep up during DATA, over each `dataRateWindow` (the first is its grace); 0: off. */
  minDataRate: field.int(1024, { min: 0 }),
  dataRateWindow: field.duration('10s'),
  warmingTiers: warmingTiersField,
  /** Recipients a day once warming is over. */
  dailyCap: field.int(10_000, { min: 0 }),
  /** A message not delivered by then bounces as expired (delivery reads messages.expires_at). */
  messageLifetime: field.duration('3d'),
  /** Failed AUTH attempts from one IP within `authFailureWindow` before AUTH is refused (454 4.7.0). */
  authFailureLimit: field.int(5, { min: 1 }),
  authFailureWindow: field.duration('15m'),
  /** Logins being checked at once from one IP (each costs a scrypt); more wait with 454 4.7.0. */
  authConcurrencyPerIp: field.int(20, { min: 1 }),
  /** How long a login being checked holds its place in that count when its process dies mid-check. */
  authCheckLease: field.duration('10s'),
  /** A label this labeler (`src`) issued; empty: any src in our labels table. */
  labelerDid: z.string().default(''),
  /** Whether the Received field the relay adds names the member's client (HELO name and IP address). */
  receivedClientAddress: field.bool(false),
  /**
   * One-click unsubscribe (RFC 8058) for mail whose X-Atmos-Category is not transactional.
   * `url`: the admin's public `/u` page (the token is appended as a path segment); https (as
   * RFC 8058 requires) except on a loopback host. `mailto`: also offer the message's VERP address, which
   * fbl-ingest reads as an unsubscribe when Apple Mail writes to it. `transactionalCategories`:
   * categories carrying no unsubscribe besides login-link, password-reset, mfa-otp, verification.
   */
  unsubscribe: section({
    url: field.publicHttpsUrl('http://127.0.0.1:3000/u'),
    mailto: field.bool(true),
    transactionalCategories: field.list([]),
  }),
})

export type SubmissionConfig = z.output<typeof submissionSection>
