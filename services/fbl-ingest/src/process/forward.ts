import { randomBytes, randomUUID } from 'node:crypto'
import { type InboundAuth, spoolPoolMessage, type Tx } from '@atmos/db'
import { type SigningKeys, signAsPool } from '@atmos/dkim'
import { verpAddress } from '@atmos/mail-feedback'
import { sql } from 'drizzle-orm'
import type { PoolIdentity } from '../pool.ts'

// Operator mail (postmaster@, abuse@, anything that is not a report) goes to an external
// inbox through the relay's own spool and delivery workers, so it gets the relay's retries
// and shaping. It goes as an attachment (message/rfc822) inside a short note of ours rather
// than as is: re-sending a stranger's message under its own From from the pool's IP fails
// their DMARC at the operator's provider and teaches that provider to distrust the pool,
// while the wrapper is mail from the pool domain with the original intact, byte for byte.

/** DMARC verdicts at receipt that let a message go on: it passed, or its domain publishes no policy. */
const FORWARDABLE_DMARC = new Set(['pass', 'none'])

/**
 * Why a message that is not a report is kept for the operator (quarantined with this reason)
 * rather than forwarded, or null when it may be forwarded. Only mail people sent to an
 * operator mailbox goes: fbl@ and bounce addresses receive reports, so anything else there
 * is noise or an attempt to have the pool relay it. Nor mail whose From domain's DMARC
 * failed (or could not be checked) at receipt: the pool would be vouching for a forgery.
 */
export function keepInsteadOfForward(
  row: { rcptTo: string[]; auth: InboundAuth | null },
  operatorMailboxes: readonly string[],
): string | null {
  const toOperator = row.rcptTo.some((r) => operatorMailboxes.includes(r.slice(0, r.lastIndexOf('@'))))
  if (!toOperator) return 'not a report, and not sent to an operator mailbox: kept, not forwarded'
  if (!row.auth) return 'not authenticated at receipt: kept, not forwarded'
  if (!FORWARDABLE_DMARC.has(row.auth.dmarc)) {
    return `DMARC ${row.auth.dmarc} for its From domain ${row.auth.fromDomain ?? '(none)'}: kept, not forwarded`
  }
  return null
}

/**
 * True when `perHour` forwards went out in the last hour (every process together). Taken
 * under a transaction-scoped lock, so that concurrent workers cannot all pass the count.
 */
export async function forwardBudgetSpent(tx: Tx, perHour: number): Promise<boolean> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext('fbl-ingest forwards'))`)
  const [row] = await tx.execute<{ n: number }>(sql`
    select count(*)::int as n from inbound_messages
    where state = 'forwarded' and forwarded_message_id is not null and kind <> 'reply'
      and processed_at > now() - interval '1 hour'`)
  return (row?.n ?? 0) >= perHour
}

/** How long the relay keeps trying to deliver a forward. */
const FORWARD_LIFETIME_MS = 5 * 86_400_000

export type ForwardInput = {
  inboundId: number
  raw: Buffer
  receivedAt: Date
  remoteAddress: string | null
  heloName: string | null
  mailFrom: string
  rcptTo: string[]
  summary: string
}

/** A forward built and signed before its transaction (signing is CPU, not database work). */
export type PreparedForward = { id: string; from: string; inbox: string; body: Buffer }

export { NoPoolKeyError } from '@atmos/dkim'

/**
 * Wraps operator mail for the inbox and signs the wrapper with the pool's DKIM key (d= the
 * pool domain, aligned with its From): unsigned mail from the pool domain would fail the
 * pool's own DMARC at the operator's provider. Without a pool key (`relay keys init` not
 * run yet) it throws, and the inbound message waits for the next try.
 */
export async function prepareForward(
  keys: SigningKeys,
  pool: PoolIdentity,
  inbox: string,
  input: ForwardInput,
): Promise<PreparedForward> {
  const id = randomUUID()
  const from = `fbl-ingest@${pool.domain}`
  const body = await signAsPool(
    keys,
    pool.domain,
    wrap({ ...input, id, from, to: inbox, poolDomain: pool.domain }),
    'forwards',
  )
  return { id, from, inbox, body }
}

/**
 * Spools a prepared forward in the caller's transaction; returns its messages.id. It is the
 * pool's own mail: no member (member_id null), so it counts against no one's volume or
 * reputation, and a bounce of it suppresses nothing.
 */
export async function spoolForward(tx: Tx, pool: PoolIdentity, f: PreparedForward): Promise<string> {
  return spoolPoolMessage(tx, {
    id: f.id,
    envelopeFrom: f.from,
    // A bounce of the forward comes back as a DSN, which is recorded, never forwarded: no loop.
    returnPath: verpAddress(pool.verp, f.id),
    messageIdHeader: `<${f.id}@${pool.domain}>`,
    body: f.body,
    to: f.inbox,
    lifetimeMs: FORWARD_LIFETIME_MS,
  })
}

function headerText(value: string): string {
  // Only printable ASCII in our own header fields; the original keeps its own bytes.
  const ascii = value
    .replace(/[^\x20-\x7e]/g, '?')
    .replace(/\s+/g, ' ')
    .trim()
  return ascii.length > 200 ? `${ascii.slice(0, 200)}…` : ascii
}

function originalSubject(raw: Buffer): string {
  const head = raw.toString('latin1', 0, Math.min(raw.length, 65536))
  const end = head.search(/\r?\n\r?\n/)
  const m = /^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(end >= 0 ? head.slice(0, end) : head)
  return m?.[1] ? m[1].replace(/\r?\n[ \t]/g, ' ') : '(no subject)'
}

function toCrlf(raw: Buffer): Buffer {
  // SMTP delivered it with CRLF; a message stored some other way is normalised so the part stays valid.
  const text = raw.toString('latin1')
  return text.includes('\r\n') ? raw : Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1')
}

function wrap(f: ForwardInput & { id: string; from: string; to: string; poolDomain: string }): Buffer {
  const boundary = `atmos-fwd-${randomBytes(12).toString('hex')}`
  const note = [
    `Inbound message ${f.inboundId} received by fbl-ingest at ${f.receivedAt.toISOString()}`,
    `from ${f.remoteAddress ?? 'unknown'} (HELO ${f.heloName ?? 'unknown'}).`,
    '',
    `MAIL FROM: <${f.mailFrom}>`,
    `RCPT TO: ${f.rcptTo.map((r) => `<${r}>`).join(', ')}`,
    `Classification: ${f.summary}`,
    '',
    'The original message is attached unchanged.',
  ].join('\r\n')
  const head = [
    `From: Atmosphere Mail fbl-ingest <${f.from}>`,
    `To: <${f.to}>`,
    `Subject: [fbl-ingest] ${headerText(originalSubject(f.raw))}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${f.id}@${f.poolDomain}>`,
    // RFC 3834: no vacation answers to this, and it is not answered automatically here either.
    'Auto-Submitted: auto-forwarded',
    `X-Atmos-Inbound-Id: ${f.inboundId}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
  ].join('\r\n')
  return Buffer.concat([
    Buffer.from(
      `${head}\r\n\r\n--${boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${note}\r\n` +
        `--${boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename="inbound-${f.inboundId}.eml"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`,
      'latin1',
    ),
    toCrlf(f.raw),
    Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'),
  ])
}
