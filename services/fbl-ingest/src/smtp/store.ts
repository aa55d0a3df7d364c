import { type Db, type InboundAuth, inboundMessages } from '@atmos/db'

export type InboundEnvelope = {
  remoteAddress: string | null
  heloName: string | null
  mailFrom: string
  rcptTo: string[]
  /** Checked only for mail to an operator mailbox (the only mail ever forwarded) or the DMARC report one. */
  auth: InboundAuth | null
  /** Set at receipt for replies to members' domains (the classifier never sees them). */
  kind?: 'reply'
}

/** Commits the raw message with its envelope; the 250 is sent only after this resolves. */
export async function storeInbound(db: Db, envelope: InboundEnvelope, raw: Buffer): Promise<number> {
  const [row] = await db
    .insert(inboundMessages)
    .values({ ...envelope, size: raw.length, raw })
    .returning({ id: inboundMessages.id })
  return row!.id
}
