import type { Tx } from './client.ts'
import { messageRecipients, messages } from './schema/index.ts'

/** A message of the pool's own, signed and ready to spool. */
export type PoolMessage = {
  id: string
  /** The sender as recorded; empty for a null sender. */
  envelopeFrom: string
  /** MAIL FROM on the wire: a VERP address, or empty for `<>` (a bounce notice). */
  returnPath: string
  messageIdHeader: string
  body: Buffer
  /** Its one recipient. */
  to: string
  /** How long the relay keeps trying to deliver it. */
  lifetimeMs: number
}

/**
 * Spools the pool's own mail (fbl-ingest's forwards to the operator, the relay's bounce
 * notices) in the caller's transaction, for the relay's delivery workers: no member
 * (member_id null), so it counts against no one's volume or reputation, a bounce of it
 * suppresses nothing and is never answered with a notice. Returns its messages.id.
 */
export async function spoolPoolMessage(tx: Tx, m: PoolMessage): Promise<string> {
  await tx.insert(messages).values({
    id: m.id,
    memberId: null,
    envelopeFrom: m.envelopeFrom,
    returnPath: m.returnPath,
    messageIdHeader: m.messageIdHeader,
    size: m.body.length,
    body: m.body,
    expiresAt: new Date(Date.now() + m.lifetimeMs),
  })
  const domain = m.to.slice(m.to.lastIndexOf('@') + 1).toLowerCase()
  await tx.insert(messageRecipients).values({ messageId: m.id, address: m.to, domain })
  return m.id
}
