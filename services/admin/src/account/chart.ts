import { count, esc } from './html.ts'

/**
 * Server-rendered SVG charts for the account pages: no library and nothing fetched, so the
 * admin works offline and under a CSP without unsafe-inline (colours are presentation
 * attributes plus a class per series, never a style attribute). Every chart comes with the
 * same figures as an HTML table, which is what a screen reader reads.
 */

export type ChartSeries = {
  /** Also the series' class, `series-<key>`, so a page's stylesheet may restyle it. */
  key: string
  label: string
  /** Bars stack on each other in series order; a line is drawn over them on the same scale. */
  kind: 'bar' | 'line'
  /** A colour from PALETTE (or any with at least 3:1 contrast on white, WCAG 1.4.11). */
  colour: string
}

export type ChartInput = {
  /** Unique on the page: the ids of the title and description derive from it. */
  id: string
  title: string
  description: string
  /** What the categories are (the first column of the table), e.g. "Hour (UTC)". */
  categoryLabel: string
  /** What the values count, along the y axis. */
  valueLabel: string
  /** One label a bucket, oldest first. */
  categories: string[]
  series: ChartSeries[]
  /** values[series][category]. */
  values: number[][]
  /** Shown in place of the bars when every value is zero. */
  emptyText: string
}

/**
 * Colours for the series, each at least 4.5:1 against white (checked by a test), so that a
 * bar or line is told from the background by anyone; adjacent bars are parted by a white gap,
 * and the legend and table name every series in words.
 */
export const PALETTE = {
  green: '#1a7f37',
  amber: '#9a6700',
  red: '#cf222e',
  grey: '#57606a',
  slate: '#424a53',
  purple: '#8250df',
  blue: '#0969da',
} as const

const WIDTH = 720
const HEIGHT = 300
const PLOT = { left: 64, right: 704, top: 16, bottom: 216 }
const FONT = 'system-ui, -apple-system, "Segoe UI", sans-serif'
const TEXT = '#1f2328'
const AXIS = '#57606a'
const GRID = '#d0d7de'

export function renderChart(input: ChartInput): { svg: string; table: string } {
  const id = input.id.toLowerCase().replace(/[^a-z0-9-]/g, '-') || 'chart'
  const n = input.categories.length
  // Figures come from the database, but a NaN or a negative here would draw nonsense.
  const values = input.series.map((_, s) =>
    input.categories.map((_, i) => {
      const v = input.values[s]?.[i] ?? 0
      return Number.isFinite(v) && v > 0 ? v : 0
    }),
  )
  const bars = input.series.map((s, i) => ({ s, v: values[i]! })).filter((x) => x.s.kind === 'bar')
  const lines = input.series.map((s, i) => ({ s, v: values[i]! })).filter((x) => x.s.kind === 'line')
  let peak = 0
  for (let i = 0; i < n; i++) {
    peak = Math.max(
      peak,
      bars.reduce((sum, b) => sum + b.v[i]!, 0),
      ...lines.map((l) => l.v[i]!),
    )
  }
  const empty = n === 0 || peak === 0

  const parts: string[] = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img"` +
      ` aria-label="${esc(input.title)}" aria-describedby="${id}-desc" font-family="${esc(FONT)}" font-size="12">`,
    `<title id="${id}-title">${esc(input.title)}</title>`,
    `<desc id="${id}-desc">${esc(input.description)}</desc>`,
  )
  const top = empty ? 1 : niceCeiling(peak)
  const y = (v: number) => PLOT.bottom - (v / top) * (PLOT.bottom - PLOT.top)
  // Grid lines and y-axis labels: four steps of a round number.
  const ticks = empty ? [0] : [0, 1, 2, 3, 4].map((k) => (top * k) / 4)
  parts.push('<g class="chart-grid">')
  for (const t of ticks) {
    const ty = fixed(y(t))
    parts.push(
      `<line x1="${PLOT.left}" x2="${PLOT.right}" y1="${ty}" y2="${ty}" stroke="${t === 0 ? AXIS : GRID}" stroke-width="1"/>`,
      `<text x="${PLOT.left - 8}" y="${ty}" text-anchor="end" dominant-baseline="middle" fill="${TEXT}">${esc(tickLabel(t))}</text>`,
    )
  }
  parts.push('</g>')
  parts.push(
    `<text class="chart-axis-title" transform="translate(14 ${fixed((PLOT.top + PLOT.bottom) / 2)}) rotate(-90)"` +
      ` text-anchor="middle" fill="${TEXT}">${esc(input.valueLabel)}</text>`,
  )

  const band = n ? (PLOT.right - PLOT.left) / n : 0
  const centre = (i: number) => PLOT.left + band * i + band / 2
  // At most eight category labels, so they never overlap; the table has them all.
  const every = Math.max(1, Math.ceil(n / 8))
  parts.push('<g class="chart-categories">')
  for (let i = 0; i < n; i++) {
    if (i % every !== 0) continue
    parts.push(
      `<text x="${fixed(centre(i))}" y="${PLOT.bottom + 16}" text-anchor="middle" fill="${TEXT}">${esc(input.categories[i])}</text>`,
    )
  }
  parts.push('</g>')
  parts.push(
    `<text class="chart-axis-title" x="${fixed((PLOT.left + PLOT.right) / 2)}" y="${PLOT.bottom + 36}" text-anchor="middle"` +
      ` fill="${TEXT}">${esc(input.categoryLabel)}</text>`,
  )

  if (empty) {
    parts.push(
      `<text class="chart-empty" x="${fixed((PLOT.left + PLOT.right) / 2)}" y="${fixed((PLOT.top + PLOT.bottom) / 2)}"` +
        ` text-anchor="middle" dominant-baseline="middle" fill="${TEXT}" font-size="14">${esc(input.emptyText)}</text>`,
    )
  } else {
    const width = Math.max(1, band * 0.7)
    // One group a series (its class and colour), filled bucket by bucket as the stacks rise.
    const groups = bars.map(() => [] as string[])
    for (let i = 0; i < n; i++) {
      let base = 0
      bars.forEach(({ s, v }, b) => {
        const value = v[i]!
        if (!value) return
        const y1 = y(base + value)
        const y0 = y(base)
        base += value
        groups[b]!.push(
          `<rect x="${fixed(centre(i) - width / 2)}" y="${fixed(y1)}" width="${fixed(width)}"` +
            ` height="${fixed(Math.max(0.5, y0 - y1))}" stroke="#ffffff" stroke-width="1">` +
            `<title>${esc(`${input.categories[i]}: ${count(value)} ${s.label}`)}</title></rect>`,
        )
      })
    }
    bars.forEach(({ s }, b) => {
      parts.push(`<g class="series series-${esc(s.key)}" fill="${esc(s.colour)}">`, ...groups[b]!, '</g>')
    })
    for (const { s, v } of lines) {
      const points = v.map((value, i) => `${fixed(centre(i))},${fixed(y(value))}`).join(' ')
      parts.push(
        `<g class="series series-${esc(s.key)}" fill="${esc(s.colour)}" stroke="${esc(s.colour)}">`,
        `<polyline points="${points}" fill="none" stroke-width="2"/>`,
        ...v.map(
          (value, i) =>
            `<circle cx="${fixed(centre(i))}" cy="${fixed(y(value))}" r="3">` +
            `<title>${esc(`${input.categories[i]}: ${count(value)} ${s.label}`)}</title></circle>`,
        ),
        '</g>',
      )
    }
  }

  // Legend along the bottom: a swatch (square for bars, line for lines) and the name.
  parts.push('<g class="chart-legend">')
  let lx = PLOT.left
  const ly = HEIGHT - 20
  for (const s of input.series) {
    parts.push(
      s.kind === 'bar'
        ? `<rect x="${lx}" y="${ly - 6}" width="12" height="12" fill="${esc(s.colour)}"/>`
        : `<line x1="${lx}" x2="${lx + 12}" y1="${ly}" y2="${ly}" stroke="${esc(s.colour)}" stroke-width="2"/>`,
      `<text x="${lx + 16}" y="${ly}" dominant-baseline="middle" fill="${TEXT}">${esc(s.label)}</text>`,
    )
    lx += 28 + Math.min(160, s.label.length * 7)
  }
  parts.push('</g>', '</svg>')

  return { svg: parts.join(''), table: chartTable(input, values) }
}

/** The chart's figures as a table: the accessible form of the chart, and what a page without SVG shows. */
function chartTable(input: ChartInput, values: number[][]): string {
  const head = input.series.map((s) => `<th scope="col">${esc(s.label)}</th>`).join('')
  const rows = input.categories
    .map(
      (c, i) =>
        `<tr><th scope="row">${esc(c)}</th>${values.map((v) => `<td>${esc(count(v[i] ?? 0))}</td>`).join('')}</tr>`,
    )
    .join('')
  return (
    `<table class="chart-table"><caption>${esc(input.title)}</caption>` +
    `<thead><tr><th scope="col">${esc(input.categoryLabel)}</th>${head}</tr></thead><tbody>${rows}</tbody></table>`
  )
}

/**
 * The top of the scale: four grid steps of 1, 2 or 5 times a power of ten (never below 1,
 * since counts are whole), so that every grid line falls on a round whole number.
 */
export function niceCeiling(v: number): number {
  if (!(v > 0)) return 4
  const raw = v / 4
  const power = 10 ** Math.max(0, Math.floor(Math.log10(raw)))
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return 4 * m * power
  return 40 * power
}

function tickLabel(v: number): string {
  if (v >= 1_000_000) return `${+(v / 1_000_000).toFixed(1)}M`
  if (v >= 10_000) return `${+(v / 1000).toFixed(1)}k`
  return count(v)
}

function fixed(v: number): string {
  return Number.isFinite(v) ? String(Math.round(v * 10) / 10) : '0'
}
