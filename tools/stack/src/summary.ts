/** A listener a service announced in its log, as the start summary shows it. */
export type LoggedListener = {
  kind: 'ops' | 'label API' | 'submission' | 'submission TLS' | 'inbound' | 'web'
  at: string
}

/** The log lines (msg and field) that announce a listener, one per kind. */
const ANNOUNCEMENTS: Array<[msg: string, field: string, kind: LoggedListener['kind']]> = [
  ['ops endpoint listening', 'http', 'ops'],
  ['xrpc endpoint listening', 'xrpc', 'label API'],
  ['submission listening (STARTTLS)', 'smtp', 'submission'],
  ['submission listening (implicit TLS)', 'smtps', 'submission TLS'],
  ['inbound smtp listening', 'smtp', 'inbound'],
  ['admin web endpoint listening', 'web', 'web'],
]

export function listenerFromLog(line: Record<string, unknown>): LoggedListener | undefined {
  for (const [msg, field, kind] of ANNOUNCEMENTS) {
    const at = line[field]
    if (line.msg === msg && typeof at === 'string') return { kind, at }
  }
  return undefined
}

/** One summary line: where, and what a newcomer does with it. */
export function formatListener(l: LoggedListener): string {
  switch (l.kind) {
    case 'ops':
      return `ops ${l.at}  (GET /healthz /readyz /metrics)`
    case 'label API': {
      const ws = l.at.replace(/^http/, 'ws')
      return `label API ${l.at}/xrpc/com.atproto.label.queryLabels?uriPatterns=*  and ${ws}/xrpc/com.atproto.label.subscribeLabels`
    }
    case 'submission':
      return `submission ${l.at}  (STARTTLS, AUTH; members: node services/relay/src/cli.ts members add)`
    case 'submission TLS':
      return `submission ${l.at}  (implicit TLS, AUTH)`
    case 'inbound':
      return `inbound SMTP ${l.at}  (bounces, complaints and replies to the pool's addresses)`
    case 'web':
      return `admin web ${l.at}  (sign in with your atproto account)`
  }
}
