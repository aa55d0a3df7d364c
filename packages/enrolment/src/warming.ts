// Warming: how many recipients a day a domain may send, by days since its activation. The relay
// enforces it; the admin shows it (what is left today). One implementation for both.

export type WarmingTier = { fromDay: number; cap: number }

const DAY_MS = 86_400_000

/** The UTC day a submission counts on (`YYYY-MM-DD`), and when that day's count resets. */
export function countingDay(now: Date): { day: string; resetsAt: Date } {
  const day = now.toISOString().slice(0, 10)
  return { day, resetsAt: new Date(Date.parse(`${day}T00:00:00Z`) + DAY_MS) }
}

/**
 * Recipients a day a domain may send: by whole days since activation, the last tier
 * whose first day has passed, and the standard cap once warming (14 days) is over. A
 * domain never activated counts as on its first day.
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
