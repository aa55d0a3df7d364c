import type { CheckName, CheckResult } from '../types.ts'

/** Builds check results; a check collects warnings as it goes and settles once. */
export class CheckBuilder {
  readonly check: CheckName
  readonly warnings: string[] = []
  readonly details: Record<string, unknown> = {}

  constructor(check: CheckName) {
    this.check = check
  }

  warn(warning: string): void {
    if (!this.warnings.includes(warning)) this.warnings.push(warning)
  }

  pass(reason: string): CheckResult {
    return this.result('pass', reason)
  }

  fail(reason: string): CheckResult {
    return this.result('fail', reason)
  }

  temperror(reason: string): CheckResult {
    return this.result('temperror', reason)
  }

  private result(outcome: CheckResult['outcome'], reason: string): CheckResult {
    return { check: this.check, outcome, reason, warnings: [...this.warnings], details: { ...this.details } }
  }
}

/** Hostile DNS data is recorded, not stored whole: records are cut to a readable length. */
export function clip(text: string, max = 512): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text
}

/** A record quoted inside a reason sentence. */
export function quote(text: string, max = 120): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text)
}
