/**
 * The wait after the `attempt`-th attempt (1-based) failed temporarily: the schedule's
 * entries in turn, then its last one again and again (2m, 5m, … 2h, then every 4h).
 */
export function retryDelay(schedule: readonly number[], attempt: number): number {
  if (schedule.length === 0) throw new Error('the retry schedule is empty')
  const i = Math.min(Math.max(attempt, 1), schedule.length) - 1
  return schedule[i] as number
}
