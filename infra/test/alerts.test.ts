import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

const root = fileURLToPath(new URL('../..', import.meta.url))
const rulesDir = join(root, 'infra', 'prometheus')
const rulesFile = join(rulesDir, 'alerts.yaml')

type Rule = { alert: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const rules: Rule[] = parse(readFileSync(rulesFile, 'utf8')).groups.flatMap((g: { rules: Rule[] }) => g.rules)

// Debian's `prometheus` package brings promtool; scripts/test.sh installs it.
function promtool(...args: string[]) {
  const result = spawnSync('promtool', args, { cwd: rulesDir, encoding: 'utf8' })
  assert.equal(result.error, undefined, 'promtool is not installed (scripts/test.sh installs Debian prometheus)')
  return result
}

/** Every TypeScript source under the services' and packages' src folders (tests excluded). */
function sources(): string[] {
  const files: string[] = []
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (name === 'node_modules' || name === 'test') continue
      if (statSync(path).isDirectory()) walk(path)
      else if (name.endsWith('.ts')) files.push(path)
    }
  }
  for (const top of ['services', 'packages'])
    for (const pkg of readdirSync(join(root, top))) {
      const src = join(root, top, pkg, 'src')
      if (statSync(join(root, top, pkg)).isDirectory() && readdirSync(join(root, top, pkg)).includes('src')) walk(src)
    }
  return files
}

const code = sources().map((f) => readFileSync(f, 'utf8'))

/** Whether the code defines a metric of this name: its name as a string literal. */
function defined(metric: string): boolean {
  return code.some((text) => text.includes(`'${metric}'`))
}

/** Metric names a PromQL expression reads (our metrics all start with atmos_). */
function metricsIn(expr: string): string[] {
  return [...new Set(expr.match(/\batmos_[a-z0-9_]+/g) ?? [])]
}

describe('Prometheus alert rules (infra/prometheus/alerts.yaml)', () => {
  it('pass promtool check rules', () => {
    const result = promtool('check', 'rules', rulesFile)
    assert.equal(result.status, 0, result.stdout + result.stderr)
    assert.match(result.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`))
  })

  it('promtool rejects a broken rule (so the check above means something)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atmos-alerts-'))
    try {
      const broken = join(dir, 'alerts.yaml')
      writeFileSync(broken, readFileSync(rulesFile, 'utf8').replace('> 1000', '> > 1000'))
      assert.notEqual(promtool('check', 'rules', broken).status, 0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('pass their unit tests (promtool test rules): they fire past their lines and not below', () => {
    const result = promtool('test', 'rules', 'alerts.test.yaml')
    assert.equal(result.status, 0, result.stdout + result.stderr)
  })

  it('read only metrics the services define', () => {
    assert.equal(defined('atmos_relay_queue_depth'), true)
    assert.equal(defined('atmos_relay_queue_depth_nonexistent'), false, 'the lookup can say no')
    for (const rule of rules) {
      const metrics = metricsIn(rule.expr)
      assert.ok(metrics.length > 0, `${rule.alert} reads no atmos_ metric`)
      for (const m of metrics) assert.ok(defined(m), `${rule.alert}: ${m} is defined nowhere in services/ or packages/`)
    }
  })

  it('cover queue backlog, bounce and complaint rates, labeler lag, certificate expiry and deferral rate', () => {
    const reads = (metric: string) => rules.filter((r) => metricsIn(r.expr).includes(metric)).map((r) => r.alert)
    for (const metric of [
      'atmos_relay_queue_depth',
      'atmos_fbl_inbound_backlog',
      'atmos_fbl_pool_bounce_rate',
      'atmos_fbl_pool_complaint_rate',
      'atmos_labeler_ingest_lag_seconds',
      'atmos_relay_submission_tls_cert_expiry_timestamp_seconds',
      'atmos_relay_deferred_total',
    ])
      assert.ok(reads(metric).length > 0, `no alert reads ${metric}`)
    for (const rule of rules) {
      assert.ok(['info', 'warning', 'critical'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity`)
      assert.ok(rule.annotations?.summary && rule.annotations.description, `${rule.alert}: summary and description`)
    }
  })
})
