import type { Pool } from '@atmos/db'

export type WarmingTier = { fromDay: number; cap: number }

const DAY_MS = 86_400_000

/** The UTC day a submission counts on (`YYYY-MM-DD`), and when that day's count resets. */
export function countingDay(now: Date): { day: string; resetsAt: Date } {
  const day = now.toISOString().slice(0, 10)
  return { day, resetsAt: new Date(Date.parse(`${day}T00:00:00Z`) + DAY_MS) }
}

/**
 * Recipients a day the member may send: by whole days since activation, the last tier
 * whose first day has passed, and the standard cap once warming (14 days) is over. A
 * member never activated counts as on its first day.
 */
export function dailyCapFor(
  activatedAt: number | null,
  now: Date,
  tiers: WarmingTier[],
  standardCap: number,
  warmingDays = 14,
): { cap: number; ageDays: number; warming: boolean } {
  const ageDays = activatedAt ? Math.max(0, Math.floor((now.getTime() - activatedAt) / DAY_MS)) : 0
  if (ageDays >= warmingDays) return { cap: standardCap, ageDays, warming: false }
  let cap = standardCap
  let warming = false
  for (const tier of tiers) {
    if (ageDays >= tier.fromDay) {
      cap = tier.cap
      warming = true
    }
  }
  return { cap, ageDays, warming }
}

/** Recipients counted for the member on that day so far. */
export async function recipientsSent(sql: Pool, memberId: number, day: string): Promise<number> {
  const [row] = await sql<{ recipients: number }[]>`
    select recipients from send_volume where member_id = ${memberId} and day = ${day}::date`
  return row?.recipients ?? 0
}

/**
 * Counts `recipients` against the day's cap, atomically: one conditional upsert, so that
 * concurrent submissions on any replica serialize on the member's row and the sum never
 * passes the cap. Returns false, counting nothing, when it would. Runs inside the spool
 * transaction, so a message that fails to spool counts nothing either.
 */
export async function reserveRecipients(
  sql: Pool,
  memberId: number,
  day: string,
  recipients: number,
  cap: number,
): Promise<boolean> {
  if (recipients > cap) return false
  const rows = await sql`
    insert into send_volume as v (member_id, day, recipients, messages)
    values (${memberId}, ${day}::date, ${recipients}, 1)
    on conflict (member_id, day) do update
      set recipients = v.recipients + excluded.recipients, messages = v.messages + 1
      where v.recipients + excluded.recipients <= ${cap}
    returning v.recipients`
  return rows.length === 1
}
