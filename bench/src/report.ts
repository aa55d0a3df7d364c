/**
 * The one output format of every benchmark. Machines here differ from run to run and
 * from each other (the same relay measured 538/s on one and 357/s on another of the same
 * kind), so a headline figure comes with a reference measured in the same run on the same
 * machine, and its target is on the ratio. A figure without a reference keeps an
 * absolute target, or none.
 */
export type Figure = {
  name: string
  value: number
  unit: string
  /** The same quantity of another implementation (or a floor), measured in the same run. */
  reference?: { name: string; value: number }
  /**
   * On the ratio value / reference (`of: 'ratio'`) or on the value itself (the default,
   * for figures without a reference).
   */
  target?: { op: '>=' | '<='; value: number; of?: 'ratio' | 'value' }
  note?: string
}

export function ratio(f: Figure): number | undefined {
  return f.reference && f.reference.value > 0 ? f.value / f.reference.value : undefined
}

export function met(f: Figure): boolean | undefined {
  if (!f.target) return undefined
  const x = f.target.of === 'ratio' ? ratio(f) : f.value
  if (x === undefined || Number.isNaN(x)) return false
  return f.target.op === '>=' ? x >= f.target.value : x <= f.target.value
}

function num(v: number | undefined): string {
  if (v === undefined) return ''
  if (Number.isNaN(v)) return 'n/a'
  if (Math.abs(v) >= 100) return String(Math.round(v))
  return String(Number(v.toPrecision(3)))
}

function targetText(f: Figure): string {
  if (!f.target) return ''
  return f.target.of === 'ratio' ? `${f.target.op} ${f.target.value}×` : `${f.target.op} ${f.target.value} ${f.unit}`
}

/** A progress line while the benchmarks run (stderr, so stdout holds the table and the JSON). */
export function progress(line: string): void {
  process.stderr.write(`${line}\n`)
}

/** One table: figure, value and unit, the same-run reference (name and value), ratio, target. */
export function printTable(figures: Figure[]): void {
  const rows = [
    ['figure', 'value', 'unit', 'reference (same run)', 'ref value', 'ratio', 'target', ''],
    ...figures.map((f) => {
      const verdict = met(f)
      const r = ratio(f)
      return [
        f.name,
        num(f.value),
        f.unit,
        f.reference?.name ?? '',
        num(f.reference?.value),
        r === undefined ? '' : `${num(r)}×`,
        targetText(f),
        verdict === undefined ? '' : verdict ? 'met' : 'MISSED',
      ]
    }),
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  const numeric = new Set([1, 4, 5])
  for (const [n, row] of rows.entries()) {
    console.log(
      row
        .map((cell, i) => (numeric.has(i) && n > 0 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
  }
  const notes = figures.filter((f) => f.note)
  if (notes.length) {
    console.log('')
    for (const f of notes) console.log(`${f.name}: ${f.note}`)
  }
}

/** The same figures as one JSON line, with the ratio and verdict computed. */
export function figuresJson(machine: Record<string, unknown>, figures: Figure[]): string {
  return JSON.stringify({
    machine,
    figures: figures.map((f) => ({ ...f, ratio: ratio(f), met: met(f) })),
  })
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}
