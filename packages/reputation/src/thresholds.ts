// Defaults after the big mailbox providers' published limits: Gmail and Yahoo ask senders
// to stay under 0.1 % complaints and never reach 0.3 %; a hard-bounce rate above a few per
// cent marks a sender that mails lists it never confirmed.

export type Thresholds = {
  /** Complaints per delivered message. */
  complaintWarn: number
  complaintSuspend: number
  /** Hard bounces per message that reached a final outcome. */
  bounceWarn: number
  bounceSuspend: number
  /** Messages a window must hold before its rates count toward a verdict. */
  minVolume: number
}

export const DEFAULT_THRESHOLDS: Thresholds = {
  complaintWarn: 0.001,
  complaintSuspend: 0.003,
  bounceWarn: 0.05,
  bounceSuspend: 0.1,
  minVolume: 100,
}

export type Level = 'ok' | 'warn' | 'suspend'

export function levelFor(rate: number, warn: number, suspend: number): Level {
  if (rate >= suspend) return 'suspend'
  if (rate >= warn) return 'warn'
  return 'ok'
}

export function worst(a: Level, b: Level): Level {
  const rank = { ok: 0, warn: 1, suspend: 2 }
  return rank[a] >= rank[b] ? a : b
}

export function percent(rate: number): string {
  return `${(rate * 100).toFixed(rate < 0.01 ? 2 : 1)} %`
}
