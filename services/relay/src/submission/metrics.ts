import type { BaseContext } from '@atmos/runtime'

type Registry = BaseContext['metrics']
type RegisteredMetric = Parameters<Registry['registerMetric']>[0]

/**
 * A counter with labels, registered on the service's prom-client registry. The relay
 * does not depend on prom-client itself (only @atmos/runtime does), so this implements
 * the registry's metric interface (`name`, `help`, `type`, `get()`) directly; swap it
 * for prom-client's Counter once the relay lists prom-client as a dependency.
 */
export class LabelledCounter<L extends string = never> {
  readonly name: string
  readonly help: string
  readonly type = 'counter'
  readonly aggregator = 'sum'
  private readonly values = new Map<string, { labels: Record<string, string>; value: number }>()

  constructor(registry: Registry, name: string, help: string) {
    this.name = name
    this.help = help
    registry.registerMetric(this as unknown as RegisteredMetric)
  }

  inc(labels: Record<L, string> = {} as Record<L, string>, by = 1): void {
    const key = JSON.stringify(Object.entries(labels).sort())
    const entry = this.values.get(key) ?? { labels: { ...(labels as Record<string, string>) }, value: 0 }
    entry.value += by
    this.values.set(key, entry)
  }

  /** The current value for a label set (tests and benchmarks read it). */
  value(labels: Record<L, string> = {} as Record<L, string>): number {
    return this.values.get(JSON.stringify(Object.entries(labels).sort()))?.value ?? 0
  }

  get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...this.values.values()].map((v) => ({ labels: v.labels, value: v.value })),
    }
  }

  reset(): void {
    this.values.clear()
  }
}

export type RefusalReason =
  | 'no_tls'
  | 'bad_credentials'
  | 'auth_backoff'
  | 'member_connections'
  | 'connection_messages'
  | 'not_active'
  | 'suspended'
  | 'not_verified'
  | 'foreign_sender'
  | 'foreign_from'
  | 'bad_headers'
  | 'recipient_syntax'
  | 'too_many_recipients'
  | 'suppressed'
  | 'over_cap'
  | 'oversize'
  | 'no_signing_key'
  | 'internal'

export type SubmissionMetrics = {
  accepted: LabelledCounter
  recipients: LabelledCounter
  refused: LabelledCounter<'reason'>
}

export function submissionMetrics(registry: Registry): SubmissionMetrics {
  return {
    accepted: new LabelledCounter(
      registry,
      'atmos_relay_submissions_accepted_total',
      'Submissions spooled (250 to DATA)',
    ),
    recipients: new LabelledCounter(
      registry,
      'atmos_relay_recipients_accepted_total',
      'Recipients spooled, one message each',
    ),
    refused: new LabelledCounter(
      registry,
      'atmos_relay_submissions_refused_total',
      'Submission commands refused, by reason',
    ),
  }
}
