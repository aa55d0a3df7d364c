/**
 * The wait before the next attempt of a delivery that has made `attempts` attempts, or null
 * when the schedule is spent. Each wait is the schedule's entry plus or minus 10 % (jitter),
 * so the deliveries of an endpoint that was down for a while do not all return at the same
 * instant.
 */
export function nextDelayMs(schedule: readonly number[], attempts: number, random = Math.random): number | null {
  const base = schedule[attempts - 1]
  if (base === undefined) return null
  return Math.max(0, Math.round(base * (0.9 + 0.2 * random())))
}
