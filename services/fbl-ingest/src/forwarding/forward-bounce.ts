import { type Db, inboundForwards, inboundMessages, type Tx } from '@atmos/db'
import type { Classification } from '@atmos/mail-feedback'
import { suppress } from '@atmos/reputation'
import { and, desc, eq, inArray, sql } from 'drizzle-orm'

// A forward's bounce comes back to its SRS address (RCPT checked the hash and the age). The
// pool records it against the forward and, for a hard bounce, puts the forward-to address on
// the member's suppression list (reason hard_bounce, for the usual 30 days; the account shows
// it and the member may lift it), so replies stop going to a mailbox that is gone. It sends
// nothing anywhere: not to the original sender (whom the SRS address names), not to the
// member. A classic SRS forwarder would pass the bounce on; the pool would then be a
// backscatter source for every forged reply. The member's reputation is untouched: a
// forward is the pool's mail, not the member's sending.

type InboundKind = (typeof inboundMessages.$inferSelect)['kind']

/** Forwards from one SRS address considered for a report: one sender's replies of a few weeks. */
const MAX_CANDIDATES = 200

export type ForwardBounceOutcome = {
  forwardId: number | null
  bounced: boolean
  suppressed: boolean
  note: string
}

/** Returns undefined when another worker finished the inbound row meanwhile. */
export async function recordForwardBounce(
  db: Db,
  row: { id: number; rcptTo: string[] },
  srsRecipient: string,
  c: Classification,
  kind: InboundKind,
  bounceSuppressionMs: number,
): Promise<ForwardBounceOutcome | undefined> {
  return db.transaction(async (tx) => {
    if (!(await claim(tx, row.id))) return undefined
    const done = await apply(tx, row.id, srsRecipient, c, bounceSuppressionMs)
    await tx
      .update(inboundMessages)
      .set({ kind, state: 'processed', processedAt: new Date() })
      .where(eq(inboundMessages.id, row.id))
    return done
  })
}

async function apply(
  tx: Tx,
  inboundId: number,
  srsRecipient: string,
  c: Classification,
  bounceSuppressionMs: number,
): Promise<ForwardBounceOutcome> {
  // One original sender's replies share an SRS address for a day, whichever members' domains
  // they went to: the forward is the newest from that address whose forward-to the report
  // names, else (a report that names no address of ours) the newest. A bounce already
  // recorded is not recorded twice.
  const candidates = await tx
    .select()
    .from(inboundForwards)
    .where(
      and(
        eq(inboundForwards.returnPath, srsRecipient.toLowerCase()),
        inArray(inboundForwards.state, ['forwarded', 'bounced']),
      ),
    )
    .orderBy(desc(inboundForwards.createdAt), desc(inboundForwards.id))
    .limit(MAX_CANDIDATES)
  const failed = c.kind === 'dsn' || c.kind === 'plain_bounce' ? c.recipients.filter((r) => r.action === 'failed') : []
  const named = new Set(failed.map((r) => r.address.toLowerCase()))
  const forward = candidates.find((f) => named.has(f.forwardTo)) ?? candidates[0]
  if (!forward)
    return { forwardId: null, bounced: false, suppressed: false, note: 'no forward was sent from this address' }
  if (!failed.length)
    return { forwardId: forward.id, bounced: false, suppressed: false, note: `${c.kind}: not a failure` }
  if (forward.state === 'bounced')
    return { forwardId: forward.id, bounced: false, suppressed: false, note: 'already recorded' }
  // The report about the forward-to address, or its one address (an alias of it); a report
  // that lists several others says nothing sure about the forward-to: recorded, not acted on.
  const own = failed.find((r) => r.address.toLowerCase() === forward.forwardTo)
  const distinct = new Set(failed.map((r) => r.address.toLowerCase()))
  const r = own ?? failed[0]!
  const hard = r.hard && (own !== undefined || distinct.size === 1)
  const what = [r.status, r.diagnostic].filter(Boolean).join(' ').replace(/\s+/g, ' ').slice(0, 400)
  await tx
    .update(inboundForwards)
    .set({
      state: 'bounced',
      reason: `${hard ? 'hard' : 'soft'} bounce: ${what}`,
      bouncedAt: new Date(),
      bounceInboundId: inboundId,
    })
    .where(eq(inboundForwards.id, forward.id))
  if (hard) {
    await suppress(tx, {
      memberId: forward.memberId,
      domainId: forward.domainId,
      address: forward.forwardTo,
      reason: 'hard_bounce',
      detail: `forward-to bounced: ${what}`.slice(0, 500),
      bounceForMs: bounceSuppressionMs,
    })
  }
  return { forwardId: forward.id, bounced: true, suppressed: hard, note: hard ? 'hard bounce' : 'soft bounce' }
}

async function claim(tx: Tx, inboundId: number): Promise<boolean> {
  const rows = await tx.execute<{ state: string }>(
    sql`select state from inbound_messages where id = ${inboundId} for update`,
  )
  return rows[0]?.state === 'received'
}
