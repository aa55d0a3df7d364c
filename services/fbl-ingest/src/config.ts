import { field, poolSection, section, serviceConfigSchema } from '@atmos/config'
import { z } from 'zod'
import { parseCidr } from './dmarc/pool-ips.ts'

const rate = (fallback: number) => z.coerce.number().min(0).max(1).default(fallback)

/** Local parts, lower-case: what the SMTP listener accepts besides VERP addresses. */
const mailboxes = (fallback: string[]) =>
  field
    .list(fallback)
    .pipe(z.array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'a lower-case local part such as postmaster')))

const domainName = z
  .string()
  .trim()
  .toLowerCase()
  .regex(
    /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/,
    'a domain name such as arf.mail.yahoo.com',
  )

/**
 * A feedback-loop provider whose complaints count toward suspension. A report authenticates
 * as it by a verified DKIM signature whose d= is one of `dkimDomains` (or below one), or by
 * an envelope sender (MAIL FROM) in one of `sendingDomains` (or below) that SPF passes for
 * the connecting address.
 */
export const feedbackProvider = z.object({
  name: z.string().trim().min(1).max(64),
  dkimDomains: z.array(domainName).default([]),
  sendingDomains: z.array(domainName).default([]),
})
export type FeedbackProvider = z.output<typeof feedbackProvider>

/** Where each identity comes from: docs/operations.md, "Feedback loops". */
export const DEFAULT_FEEDBACK_PROVIDERS: FeedbackProvider[] = [
  { name: 'yahoo', dkimDomains: ['yahoo.com'], sendingDomains: ['arf.mail.yahoo.com'] },
  { name: 'microsoft', dkimDomains: ['hotmail.com', 'outlook.com'], sendingDomains: ['hotmail.com'] },
  // Gmail sends senders no per-message reports (its figures come as aggregate_feedback):
  // nothing authenticates as Gmail, so a report that claims to be one does not count.
  { name: 'gmail', dkimDomains: [], sendingDomains: [] },
]

/** A JSON list in the environment (ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS='[{"name":…}]'), a list in the file. */
const providers = z.preprocess((v) => {
  if (typeof v !== 'string') return v
  try {
    return JSON.parse(v)
  } catch {
    return v
  }
}, z.array(feedbackProvider).max(100))

const BYTES_MB = 1024 * 1024

/**
 * DMARC aggregate reports (RFC 7489 §7.2) for members: the mailbox their DMARC records name in
 * `rua=`, and the bounds one report may cost. Reports come from anyone who can send mail.
 */
const dmarcSection = section({
  /** Local part at the pool domain (`<mailbox>@<pool domain>`); empty: no report mailbox. */
  mailbox: z
    .union([z.literal(''), z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'a lower-case local part such as dmarc')])
    .default('dmarc'),
  /**
   * The pool's sending addresses (IPs or CIDR ranges): rows from them are "the pool", every
   * other source is someone else sending as the member's domain. Keep equal to what the
   * pool's SPF record (`_spf.<pool domain>`) allows.
   */
  poolIps: field
    .list([])
    .pipe(z.array(z.string().refine((v) => parseCidr(v) !== null, 'an IP address or CIDR range such as 192.0.2.0/24'))),
  /** The report attachment as sent (zip or gzip) and once decompressed. */
  maxCompressed: field.int(10 * BYTES_MB, { min: 1024 }),
  maxUncompressed: field.int(50 * BYTES_MB, { min: 1024 }),
  /** Zip archives holding more entries are refused unread (a report is one XML file). */
  maxZipEntries: field.int(16, { min: 1, max: 1000 }),
  /** Uncompressed to compressed size past which an archive is refused as a bomb. */
  maxRatio: field.int(200, { min: 2 }),
  /** Records (<record> rows) one report may hold; more is refused whole. */
  maxRows: field.int(100_000, { min: 1 }),
  /** Distinct source IPs whose reverse name is looked up per report (the rest stay blank). */
  reverseLookups: field.int(200, { min: 0, max: 10_000 }),
  /** One PTR query; a slow or failed answer leaves the reverse name blank. */
  reverseTimeout: field.duration('2s'),
  /** Reports whose range ended longer ago are deleted by the reconciler (they list others' addresses); 0: kept. */
  retention: field.duration('90d'),
})

/** The fbl-ingest's own settings, under `fblIngest` in the config file and `ATMOS_FBL_INGEST_*` in the environment. */
export const fblIngestSection = section({
  /**
   * What this process runs: the port-25 listener (`smtp`), the classifier and its
   * reconciler (`worker`), or both. Stopping the worker loses nothing: stored mail waits.
   */
  roles: z
    .preprocess(
      (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v),
      z.array(z.enum(['smtp', 'worker'])).min(1),
    )
    .default(['smtp', 'worker']),
  pool: poolSection,
  smtp: section({
    // Unprivileged and on loopback unless configured: a service started by hand as anyone
    // works; the public port 25 is a deployment's choice (compose and k8s map 25 to 2525
    // and set the host to 0.0.0.0 explicitly).
    host: field.string('127.0.0.1'),
    port: field.port(2525),
    /** Name in the greeting and EHLO answer; empty: the pool domain. */
    hostname: z.string().default(''),
    /** STARTTLS is offered only when both files are set. */
    tlsCertFile: z.string().default(''),
    tlsKeyFile: z.string().default(''),
    /** Bytes; larger messages get 552 5.3.4. Reports and bounces are small; operator mail is read, not archived. */
    maxSize: field.int(2 * 1024 * 1024, { min: 1024 }),
    maxRecipients: field.int(50, { min: 1, max: 1000 }),
    maxClients: field.int(200, { min: 1 }),
    socketTimeout: field.duration('60s'),
    /** Connections one address (an IPv6 /64) may hold at once on one process; more get 421 4.7.0 at connect. */
    maxConnectionsPerAddress: field.int(10, { min: 1 }),
    /** From connect to a first accepted recipient, however busy the client keeps the connection. */
    recipientTimeout: field.duration('30s'),
    /** A whole connection, however busy; a message being answered is answered first. */
    maxSessionLength: field.duration('10m'),
    /** Bytes a second a client must keep up during DATA, over each `dataRateWindow` (the first is its grace); 0: off. */
    minDataRate: field.int(1024, { min: 0 }),
    dataRateWindow: field.duration('10s'),
    /**
     * Messages one address (an IPv6 /64) may begin within `messageRateWindow` on one process;
     * more get 450 4.7.1 at MAIL FROM with the wait. 0: no limit. Per process, as the
     * connection limit: port 25 keeps answering without Redis.
     */
    maxMessagesPerAddress: field.int(120, { min: 0 }),
    messageRateWindow: field.duration('1m'),
  }),
  /**
   * Mailboxes at the pool and bounce domains read by people: their mail is forwarded to `operatorInbox`.
   * (`dmarc` is the DMARC report mailbox below, read by the parser, not by people.)
   */
  operatorMailboxes: mailboxes(['postmaster', 'abuse', 'hostmaster']),
  /** Mailboxes registered with providers' feedback loops (Yahoo CFL, Microsoft JMRP): reports expected. */
  feedbackMailboxes: mailboxes(['fbl']),
  /** External address operator mail is forwarded to; empty keeps it in inbound_messages only. */
  operatorInbox: z.union([z.literal(''), z.email()]).default(''),
  /** Forwards to operatorInbox at most this many an hour (all processes together); the rest is kept, quarantined. */
  forwardsPerHour: field.int(30, { min: 0 }),
  /**
   * DNS servers (`host` or `host:port`) for the checks fbl-ingest makes of what it receives: DKIM,
   * SPF and DMARC of mail to an operator mailbox at receipt, a complaint's reporter when it is
   * processed. Empty: the machine's resolvers.
   */
  dnsServers: field.list([]),
  /** Port for dnsServers entries that do not name one; 0: 53. */
  dnsPort: field.port(0),
  /** One query of the reports' DKIM and SPF checks (the complaint's reporter). */
  dnsTimeout: field.duration('5s'),
  /** The whole receipt check; past it the message is stored unverified and not forwarded. */
  authTimeout: field.duration('10s'),
  /** Feedback-loop providers whose complaints count; a complaint from anyone else is recorded, not counted. */
  feedbackProviders: providers.default(DEFAULT_FEEDBACK_PROVIDERS),
  /** Mail to members' enrolled domains, forwarded to each domain's forward-to address (README: "Replies to members' domains"). */
  forwarding: section({
    /** Forwards a domain may make an hour (all processes together); past it RCPT gets 450 4.7.1. 0: no limit. */
    perDomainPerHour: field.int(100, { min: 0 }),
    /** How long an SRS address (a forward's envelope sender) is accepted for its bounces. */
    srsMaxAge: field.duration('21d'),
    /**
     * A message that already carries this many of the pool's own ARC seals has gone round: it
     * is kept, not forwarded again (a forward-to at another member's domain is one legitimate hop).
     */
    maxHops: field.int(3, { min: 1, max: 20 }),
    /** How long what RCPT learnt of a domain (forward-to, suppressed, the hour's count) is reused. */
    cacheTtl: field.duration('30s'),
  }),
  dmarc: dmarcSection,
  worker: section({
    concurrency: field.int(4, { min: 1, max: 64 }),
    /** How often stored but unprocessed mail is re-enqueued (Redis keeps nothing on disk). */
    reconcileInterval: field.duration('60s'),
  }),
  /**
   * How long the raw bytes of a finished inbound message are kept (reports quote recipients'
   * mail); then the reconciler empties them in batches. The row and its events stay. 0: forever.
   */
  rawRetention: field.duration('30d'),
  /** How long a hard bounce keeps an address on the member's suppression list. */
  bounceSuppression: field.duration('30d'),
  thresholds: section({
    complaintWarn: rate(0.001),
    complaintSuspend: rate(0.003),
    bounceWarn: rate(0.05),
    bounceSuspend: rate(0.1),
    /** Messages a window must hold before its rates decide anything. */
    minVolume: field.int(100, { min: 1 }),
  }),
})

/** One mailbox, one reader: a DMARC mailbox also listed for operators would be read by both. */
const fblIngestChecked = fblIngestSection.superRefine((v, ctx) => {
  const box = v.dmarc.mailbox
  if (box && (v.operatorMailboxes.includes(box) || v.feedbackMailboxes.includes(box))) {
    ctx.addIssue({
      code: 'custom',
      path: ['dmarc', 'mailbox'],
      message: `${box} is also an operator or feedback mailbox; remove it there or pick another`,
    })
  }
})

export const fblIngestConfigSchema = serviceConfigSchema('fblIngest', { httpPort: 8104, own: fblIngestChecked })

export type FblIngestConfig = z.output<typeof fblIngestConfigSchema>
export type FblIngestSettings = FblIngestConfig['fblIngest']
