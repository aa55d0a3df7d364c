import type { Pool } from '@atmos/db'
import { reserveRecipients } from './warming.ts'

export type SpooledCopy = {
  /** messages.id: also the token in the return path and the reference header. */
  id: string
  recipient: string
  domain: string
  returnPath: string
  /** The signed message as it goes out. */
  body: Buffer
}

export type SpoolRequest = {
  memberId: number
  envelopeFrom: string
  messageIdHeader: string
  copies: SpooledCopy[]
  expiresAt: Date
  /** Warming: the day counted on and the cap it must stay within. */
  day: string
  cap: number
}

export class OverCapError extends Error {
  override name = 'OverCapError'
}

/**
 * Commits every copy (one message row per recipient) with its recipient row and the day's
 * count in one transaction: either all of it is durable before the 250, or none of it is
 * and nothing was counted.
 */
export async function spoolMessage(sql: Pool, req: SpoolRequest): Promise<string[]> {
  return sql.begin(async (tx) => {
    if (!(await reserveRecipients(tx as unknown as Pool, req.memberId, req.day, req.copies.length, req.cap))) {
      throw new OverCapError(`over the daily cap of ${req.cap}`)
    }
    const rows = req.copies.map((c) => ({
      id: c.id,
      member_id: req.memberId,
      envelope_from: req.envelopeFrom,
      return_path: c.returnPath,
      message_id_header: req.messageIdHeader,
      size: c.body.length,
      body: c.body,
      // As ISO text: the drizzle-wrapped pool passes Date parameters through unserialized.
      expires_at: req.expiresAt.toISOString(),
    }))
    await tx`insert into messages ${tx(rows)}`
    const recipients = req.copies.map((c) => ({ message_id: c.id, address: c.recipient, domain: c.domain }))
    await tx`insert into message_recipients ${tx(recipients)}`
    return req.copies.map((c) => c.id)
  })
}
