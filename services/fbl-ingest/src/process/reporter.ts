import { dkimVerify, spf } from 'mailauth'
import type { FeedbackProvider } from '../config.ts'

/** mailauth's resolver shape: `dns.promises.resolve(name, type)`. */
export type ReportResolver = (name: string, type: string) => Promise<unknown>

/** The stored report as it arrived: its bytes and envelope. */
export type ArrivedReport = {
  raw: Buffer
  mailFrom: string
  remoteAddress: string | null
  heloName: string | null
}

export type Reporter =
  /** The report authenticated as a configured feedback-loop provider. */
  | { provider: string; via: 'dkim' | 'spf'; domain: string }
  /** Anyone else: a stranger holding one message can write a well-formed report. */
  | { provider: null; why: string }

/**
 * The provider's DNS did not answer: whether the report is theirs is unknown for now. The
 * job fails and is retried (the stored message waits), so a real complaint is not recorded
 * as uncounted for a DNS hiccup. A stranger cannot cause this: it needs the provider's DNS.
 */
export class ReporterCheckUnavailable extends Error {}

const within = (domain: string, listed: readonly string[]) =>
  listed.some((d) => domain === d || domain.endsWith(`.${d}`))

/**
 * Who sent a feedback report, as far as it can be proved: a passing DKIM signature whose
 * d= a provider lists (DKIM survives the report's relaying and covers its body, so the
 * feedback part and the returned headers are the provider's), or else an envelope sender
 * in a provider's sending domains that SPF passes for the connecting address. A
 * signature with l= leaves bytes unsigned that anyone could append, so it proves nothing
 * here. The From header alone is never enough: it is whatever the sender typed. Throws
 * only ReporterCheckUnavailable, when a provider's own DNS failed temporarily.
 */
export async function authenticateReporter(
  report: ArrivedReport,
  providers: readonly FeedbackProvider[],
  opts: { resolver: ReportResolver; mta: string; timeoutMs: number },
): Promise<Reporter> {
  const resolver = opts.resolver as (name: string, type: string) => Promise<string[][] | string[]>
  const notes: string[] = []
  if (providers.some((p) => p.dkimDomains.length)) {
    try {
      const { results } = await dkimVerify(report.raw, { resolver })
      for (const r of results) {
        const d = r.signingDomain?.toLowerCase() ?? ''
        if (!d) continue
        const p = providers.find((x) => within(d, x.dkimDomains))
        if (p && r.status.result === 'temperror') {
          throw new ReporterCheckUnavailable(`DKIM key of ${d} not retrieved: ${r.status.comment ?? 'temperror'}`)
        }
        if (r.status.result !== 'pass') {
          notes.push(`DKIM d=${d} ${r.status.result}`)
          continue
        }
        if (r.status.underSized) {
          notes.push(`DKIM d=${d} leaves ${r.status.underSized} body bytes unsigned (l=)`)
          continue
        }
        if (p) return { provider: p.name, via: 'dkim', domain: d }
        notes.push(`DKIM d=${d} is no configured provider's`)
      }
    } catch (err) {
      if (err instanceof ReporterCheckUnavailable) throw err
      notes.push(`DKIM not checked: ${(err as Error).message}`)
    }
  }
  const at = report.mailFrom.lastIndexOf('@')
  const senderDomain = at > 0 ? report.mailFrom.slice(at + 1).toLowerCase() : ''
  const p = senderDomain ? providers.find((x) => within(senderDomain, x.sendingDomains)) : undefined
  if (p && report.remoteAddress) {
    try {
      const result = await spf({
        sender: report.mailFrom,
        ip: report.remoteAddress.replace(/^::ffff:/, ''),
        helo: report.heloName ?? undefined,
        mta: opts.mta,
        resolver,
        maxElapsedTime: opts.timeoutMs,
      })
      if (result.status.result === 'pass') return { provider: p.name, via: 'spf', domain: senderDomain }
      if (result.status.result === 'temperror') {
        throw new ReporterCheckUnavailable(`SPF of ${senderDomain} not retrieved: temperror`)
      }
      notes.push(`SPF ${result.status.result} for MAIL FROM ${senderDomain} from ${report.remoteAddress}`)
    } catch (err) {
      if (err instanceof ReporterCheckUnavailable) throw err
      notes.push(`SPF not checked: ${(err as Error).message}`)
    }
  } else if (senderDomain) {
    notes.push(`MAIL FROM ${senderDomain} is no configured provider's`)
  } else {
    notes.push('null MAIL FROM')
  }
  return { provider: null, why: notes.join('; ') || 'no signature or envelope of a configured provider' }
}
