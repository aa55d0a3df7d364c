/** One benchmark figure, printed with its target and whether it met it. */
export type Figure = {
  name: string
  value: number
  unit: string
  target?: { op: '>=' | '<='; value: number }
  note?: string
}

export function met(f: Figure): boolean | undefined {
  if (!f.target) return undefined
  return f.target.op === '>=' ? f.value >= f.target.value : f.value <= f.target.value
}

export function printFigure(f: Figure): void {
  const verdict = met(f)
  const target = f.target ? `target ${f.target.op} ${f.target.value} ${f.unit}` : ''
  const mark = verdict === undefined ? '' : verdict ? 'met' : 'MISSED'
  const value = Number.isInteger(f.value) ? f.value : Number(f.value.toFixed(2))
  console.log(
    `${f.name.padEnd(46)} ${String(value).padStart(10)} ${f.unit.padEnd(12)} ${target.padEnd(28)} ${mark}${f.note ? `  (${f.note})` : ''}`,
  )
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}
