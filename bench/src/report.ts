/**
 * One benchmark figure. Machines differ from run to run, so a headline figure carries a
 * reference measured in the same run, and its target is then on the ratio (value ÷ reference).
 */
export type Figure = {
  name: string
  value: number
  unit: string
  reference?: { name: string; value: number }
  /** `of: 'ratio'`: the target is on value ÷ reference; otherwise on the value itself. */
  target?: { op: '>=' | '<='; value: number; of?: 'ratio' }
  note?: string
}

export function ratio(f: Figure): number | undefined {
  return f.reference && f.reference.value > 0 ? f.value / f.reference.value : undefined
}

export function met(f: Figure): boolean | undefined {
  if (!f.target) return undefined
  const v = f.target.of === 'ratio' ? ratio(f) : f.value
  if (v === undefined) return false
  return f.target.op === '>=' ? v >= f.target.value : v <= f.target.value
}

const num = (v: number) => (Number.isInteger(v) ? String(v) : v >= 100 ? v.toFixed(0) : v.toFixed(2))

export function printFigure(f: Figure): void {
  const verdict = met(f)
  const r = ratio(f)
  const target = f.target ? `${f.target.of === 'ratio' ? 'ratio ' : ''}${f.target.op} ${f.target.value}` : ''
  const mark = verdict === undefined ? '' : verdict ? 'met' : 'MISSED'
  const ref = f.reference ? `${num(f.reference.value)} (${f.reference.name})` : ''
  console.log(
    `${f.name.padEnd(60)} ${num(f.value).padStart(9)} ${f.unit.padEnd(11)} ref ${ref.padEnd(40)} ${r === undefined ? ''.padEnd(7) : `×${r.toFixed(2)}`.padEnd(7)} ${target.padEnd(12)} ${mark}${f.note ? `\n    ${f.note}` : ''}`,
  )
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}
