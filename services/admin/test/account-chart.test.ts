import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type ChartInput, niceCeiling, PALETTE, renderChart } from '../src/account/chart.ts'

// The account's SVG chart: well-formed XML whatever the labels say, accessible, no NaN.

/**
 * A small XML well-formedness check: one root, tags balanced and properly nested, every
 * attribute quoted and unique, no `<` in text or attribute values and every `&` an entity.
 * Returns the elements it saw (name, attributes, the text directly inside).
 */
function parseXml(xml: string): Array<{ name: string; attrs: Map<string, string>; text: string }> {
  const elements: Array<{ name: string; attrs: Map<string, string>; text: string }> = []
  const stack: Array<(typeof elements)[number]> = []
  const entity = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/y
  const checkText = (text: string, where: string) => {
    for (let i = 0; i < text.length; i++) {
      if (text[i] === '<') throw new Error(`raw < in ${where}`)
      if (text[i] === '&') {
        entity.lastIndex = i
        if (!entity.test(text)) throw new Error(`bare & in ${where}: ${text.slice(i, i + 12)}`)
      }
    }
  }
  const decode = (t: string) =>
    t
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&amp;/g, '&')
  let i = 0
  let roots = 0
  while (i < xml.length) {
    const lt = xml.indexOf('<', i)
    const text = xml.slice(i, lt === -1 ? xml.length : lt)
    if (text) {
      if (!stack.length && text.trim()) throw new Error('text outside the root')
      checkText(text, 'text')
      if (stack.length) stack.at(-1)!.text += decode(text)
    }
    if (lt === -1) break
    const gt = xml.indexOf('>', lt)
    if (gt === -1) throw new Error('unterminated tag')
    const tag = xml.slice(lt + 1, gt)
    i = gt + 1
    if (tag.startsWith('/')) {
      const open = stack.pop()
      if (open?.name !== tag.slice(1)) throw new Error(`</${tag.slice(1)}> closes <${open?.name}>`)
      continue
    }
    const selfClosing = tag.endsWith('/')
    const m = /^([A-Za-z][\w:.-]*)((?:\s+[A-Za-z][\w:.-]*="[^"]*")*)\s*\/?$/.exec(tag)
    if (!m) throw new Error(`malformed tag <${tag.slice(0, 60)}>`)
    const attrs = new Map<string, string>()
    for (const a of m[2]!.matchAll(/([A-Za-z][\w:.-]*)="([^"]*)"/g)) {
      if (attrs.has(a[1]!)) throw new Error(`attribute ${a[1]} twice`)
      checkText(a[2]!, `attribute ${a[1]}`)
      attrs.set(a[1]!, decode(a[2]!))
    }
    if (!stack.length) roots++
    if (roots > 1) throw new Error('more than one root')
    const el = { name: m[1]!, attrs, text: '' }
    elements.push(el)
    if (!selfClosing) stack.push(el)
  }
  if (stack.length) throw new Error(`<${stack.at(-1)!.name}> is never closed`)
  return elements
}

function input(over: Partial<ChartInput> = {}): ChartInput {
  return {
    id: 'c1',
    title: 'Mail from <b>&"x"</b>.example',
    description: 'A <desc> & "quotes"',
    categoryLabel: 'Hour (UTC)',
    valueLabel: 'Recipients',
    categories: ['00:00', '01:00', '<script>', '03:00'],
    series: [
      { key: 'delivered', label: 'Delivered', kind: 'bar', colour: PALETTE.green },
      { key: 'bounced', label: 'Bounced <&">', kind: 'bar', colour: PALETTE.red },
      { key: 'complained', label: 'Complained', kind: 'line', colour: PALETTE.purple },
    ],
    values: [
      [5, 0, 12, 3],
      [1, 0, 2, 0],
      [0, 0, 1, 0],
    ],
    emptyText: 'No mail',
    ...over,
  }
}

/** WCAG relative luminance contrast of a colour against white. */
function contrastOnWhite(hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = Number.parseInt(hex.slice(i, i + 2), 16) / 255
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4
  }) as [number, number, number]
  return 1.05 / (0.2126 * r + 0.7152 * g + 0.0722 * b + 0.05)
}

describe('account chart', () => {
  it('has an XML check that catches what an unescaped label would cause', () => {
    for (const bad of [
      '<svg><text>a & b</text></svg>',
      '<svg><text><b>x</text></b></svg>',
      '<svg a="1" a="2"/>',
      '<svg>',
    ]) {
      assert.throws(() => parseXml(bad), bad)
    }
  })

  it('is well-formed SVG with a title, a description and role img, and the labels stay text', () => {
    const { svg, table } = renderChart(input())
    const els = parseXml(svg)
    const root = els[0]!
    assert.equal(root.name, 'svg')
    assert.equal(root.attrs.get('xmlns'), 'http://www.w3.org/2000/svg')
    assert.equal(root.attrs.get('role'), 'img')
    assert.equal(root.attrs.get('aria-label'), 'Mail from <b>&"x"</b>.example')
    assert.equal(root.attrs.get('aria-describedby'), 'c1-desc')
    assert.equal(els.find((e) => e.name === 'title')?.text, 'Mail from <b>&"x"</b>.example')
    assert.equal(els.find((e) => e.name === 'desc')?.attrs.get('id'), 'c1-desc')
    assert.equal(els.find((e) => e.name === 'desc')?.text, 'A <desc> & "quotes"')
    // No element from the labels: the only names are the chart's own.
    const names = new Set(els.map((e) => e.name))
    assert.deepEqual(
      [...names].filter(
        (n) => !['svg', 'title', 'desc', 'g', 'line', 'text', 'rect', 'polyline', 'circle'].includes(n),
      ),
      [],
    )
    assert.ok(els.some((e) => e.name === 'text' && e.text === '<script>'))
    assert.ok(els.some((e) => e.name === 'text' && e.text === 'Bounced <&">'))
    assert.doesNotMatch(svg, /NaN|Infinity|undefined|style=/)
    // Bars: one rect a non-zero value, each with its figure as a tooltip; the stack is the sum.
    const bars = els.filter((e) => e.name === 'rect' && e.attrs.has('stroke'))
    assert.equal(bars.length, 5)
    assert.ok(els.some((e) => e.name === 'title' && e.text === '<script>: 2 Bounced <&">'))
    // The table: parseable too, the same figures, escaped.
    const cells = parseXml(table)
    assert.equal(cells[0]!.name, 'table')
    assert.equal(cells.find((e) => e.name === 'caption')?.text, 'Mail from <b>&"x"</b>.example')
    assert.deepEqual(
      cells.filter((e) => e.name === 'td').map((e) => e.text),
      ['5', '1', '0', '0', '0', '0', '12', '2', '1', '3', '0', '0'],
    )
    assert.ok(cells.some((e) => e.name === 'th' && e.attrs.get('scope') === 'row' && e.text === '<script>'))
  })

  it('renders zero data as an empty state, not NaN, and still parses', () => {
    const zero = input({
      values: [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
      ],
    })
    for (const chart of [zero, input({ categories: [], values: [] }), input({ values: [[Number.NaN, -3, 0, 0]] })]) {
      const { svg, table } = renderChart(chart)
      const els = parseXml(svg)
      parseXml(table)
      assert.doesNotMatch(svg, /NaN|Infinity/)
      assert.equal(els.find((e) => e.attrs.get('class') === 'chart-empty')?.text, 'No mail')
      assert.equal(els.filter((e) => e.name === 'rect' && e.attrs.has('stroke')).length, 0)
    }
  })

  it('scales to round grid lines, whatever the peak', () => {
    for (const [peak, top] of [
      [1, 4],
      [4, 4],
      [5, 8],
      [13, 20],
      [99, 200],
      [101, 200],
      [7_000, 8_000],
    ] as const) {
      assert.equal(niceCeiling(peak), top, `peak ${peak}`)
      assert.ok(Number.isInteger(niceCeiling(peak) / 4))
    }
    const { svg } = renderChart(input({ values: [[13, 0, 0, 0]] }))
    const labels = parseXml(svg)
      .filter((e) => e.name === 'text' && e.attrs.get('text-anchor') === 'end')
      .map((e) => e.text)
    assert.deepEqual(labels, ['0', '5', '10', '15', '20'])
  })

  it('uses colours with at least 4.5:1 contrast on white', () => {
    for (const [name, hex] of Object.entries(PALETTE)) {
      assert.ok(contrastOnWhite(hex) >= 4.5, `${name} ${hex}: ${contrastOnWhite(hex).toFixed(2)}`)
    }
  })
})
