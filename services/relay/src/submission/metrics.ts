import type { BaseContext } from '@atmos/runtime'
import { Counter, Gauge } from 'prom-client'

type Registry = BaseContext['metrics']

/**
 * A prom-client counter that also reads back synchronously (tests and benchmarks assert
 * on refusals by reason right after a session).
 */
export class LabelledCounter<L extends string = never> {
  private readonly counter: Counter<string>
  private readonly values = new Map<string, number>()

  constructor(registry: Registry, name: string, help: string, labelNames: readonly L[] = []) {
    this.counter = new Counter({ name, help, labelNames: [...labelNames], registers: [registry] })
  }

  inc(labels: Record<L, string> = {} as Record<L, string>, by = 1): void {
    this.counter.inc(labels as Record<string, string>, by)
    const key = JSON.stringify(Object.entries(labels).sort())
    this.values.set(key, (this.values.get(key) ?? 0) + by)
  }

  /** The current value for a label set. */
  value(labels: Record<L, string> = {} as Record<L, string>): number {
    return this.values.get(JSON.stringify(Object.entries(labels).sort())) ?? 0
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
  | 'out_of_scope'
  | 'foreign_from'
  | 'bad_headers'
  | 'recipient_syntax'
  | 'too_many_recipients'
  | 'suppressed'
  | 'over_cap'
  | 'throttled'
  | 'oversize'
  | 'no_signing_key'
  | 'internal'
  | 'auth_unavailable'
  | 'address_connections'
  | 'establish_timeout'
  | 'session_length'
  | 'data_rate'

export type SubmissionMetrics = {
  accepted: LabelledCounter
  recipients: LabelledCounter
  refused: LabelledCounter<'reason'>
  /** Answers of the HTTP send API by code (`OK` for a 200). */
  apiAnswers: LabelledCounter<'code'>
  /** When the certificate submission serves stops being valid (the alert rules watch it). */
  tlsCertExpiry: Gauge<string>
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
      ['reason'],
    ),
    apiAnswers: new LabelledCounter(
      registry,
      'atmos_relay_send_api_answers_total',
      'Answers of the HTTP send API, by error code (OK for a 200)',
      ['code'],
    ),
    tlsCertExpiry: new Gauge({
      name: 'atmos_relay_submission_tls_cert_expiry_timestamp_seconds',
      help: 'Unix time at which the STARTTLS certificate submission loaded at start stops being valid',
      registers: [registry],
    }),
  }
}
