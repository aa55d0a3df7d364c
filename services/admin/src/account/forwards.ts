import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'
import { esc, utc } from './html.ts'

// The domain page's recent forwards: replies to the domain that fbl-ingest forwarded to its
// forward-to address (or did not, and why), with what became of each at the relay. The
// member sees whether replies reach it without asking the operator; the original sender's
// address is shown, the message itself never is (it is the correspondent's, kept only as
// long as the inbound retention).

export const RECENT_FORWARDS = 20

export type RecentForward = {
  at: Date
  sender: string
  recipient: string
  forwardTo: string
  /** forwarded (queued, deferred …: the relay's state), delivered, bounced, refused. */
  state: string
  detail: string | null
}

/** The domain's newest forwards, at most `limit`; the domain is one the caller checked the member owns. */
export async function recentForwards(db: Db, domainId: number, limit = RECENT_FORWARDS): Promise<RecentForward[]> {
  const rows = await db.execute<{
    at: string
    sender: string
    recipient: string
    forward_to: string
    state: string
    reason: string | null
    relay_state: string | null
    last_reply: string | null
  }>(sql`
    select f.created_at as at, i.mail_from as sender, f.recipient, f.forward_to, f.state, f.reason,
           r.state as relay_state, r.last_reply
    from inbound_forwards f
    join inbound_messages i on i.id = f.inbound_id
    left join message_recipients r on r.message_id = f.message_id
    where f.domain_id = ${domainId}
    order by f.created_at desc, f.id desc
    limit ${limit}`)
  return rows.map((r) => {
    // A bounce reported later (a DSN to the SRS address) outranks the relay's "delivered".
    const state = r.state === 'forwarded' ? (r.relay_state ?? 'queued') : r.state
    const detail = r.state === 'forwarded' ? r.last_reply : r.reason
    return {
      at: new Date(r.at),
      sender: r.sender || '(none: a bounce)',
      recipient: r.recipient,
      forwardTo: r.forward_to,
      state,
      detail,
    }
  })
}

/** The small table on the domain page; nothing when there is nothing to show. */
export function forwardsSection(rows: RecentForward[]): string {
  const head = '<h2>Recent forwards</h2>'
  if (!rows.length) return `${head}<p>No replies forwarded yet.</p>`
  const body = rows
    .map(
      (r) =>
        `<tr><td>${esc(utc(r.at))}</td><td>${esc(r.sender)}</td><td>${esc(r.recipient)}</td>` +
        `<td>${esc(r.forwardTo)}</td><td data-state="${esc(r.state)}">${esc(r.state)}</td><td>${esc(r.detail ?? '')}</td></tr>`,
    )
    .join('')
  return [
    head,
    '<table data-testid="forwards"><thead><tr><th scope="col">Received</th><th scope="col">From</th>',
    '<th scope="col">To</th><th scope="col">Forwarded to</th><th scope="col">State</th><th scope="col">Detail</th></tr></thead>',
    `<tbody>${body}</tbody></table>`,
  ].join('')
}
