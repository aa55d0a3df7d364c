import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  decideSpike,
  decideSpray,
  decideThrottle,
  describeThrottle,
  type SpikeThresholds,
  type SprayThresholds,
  spikeLimit,
  type ThrottleThresholds,
} from '../src/index.ts'

const spike: SpikeThresholds = { mode: 'enforce', factor: 4, floor: 500 }
const spray: SprayThresholds = { mode: 'enforce', floor: 100, maxDomains: 400, maxRatio: 0.9 }
const both: ThrottleThresholds = { spike, spray }
const f = (hourRecipients: number, peakHour = 0, hourDomains = 1) => ({ hourRecipients, peakHour, hourDomains })

describe('spike rule', () => {
  it('holds a domain without history to the floor alone, and fires only above it', () => {
    assert.equal(spikeLimit(spike, 0), 500)
    assert.equal(decideSpike(spike, f(500)), null)
    assert.deepEqual(decideSpike(spike, f(501)), {
      window: '1h',
      recipients: 501,
      peakHour: 0,
      historyDays: 14,
      factor: 4,
      floor: 500,
      limit: 500,
    })
  })

  it('lets a domain with a busy past send factor × its busiest hour', () => {
    assert.equal(spikeLimit(spike, 300), 1200)
    assert.equal(decideSpike(spike, f(1200, 300)), null)
    assert.equal(decideSpike(spike, f(1201, 300))?.limit, 1200)
    // A fractional factor rounds the limit down, never up.
    assert.equal(spikeLimit({ factor: 1.5, floor: 1 }, 3), 4)
  })

  it('decides nothing when off, and ignores a negative history', () => {
    assert.equal(decideSpike({ ...spike, mode: 'off' }, f(1_000_000)), null)
    assert.equal(spikeLimit(spike, -10), 500)
  })
})

describe('spray rule', () => {
  it('looks at nothing below its floor, however spread the recipients', () => {
    assert.equal(decideSpray(spray, f(99, 0, 99)), null)
    assert.equal(decideSpray(spray, f(0, 0, 0)), null)
  })

  it('fires on the ratio of distinct domains to recipients above maxRatio', () => {
    assert.equal(decideSpray(spray, f(100, 0, 90)), null)
    assert.deepEqual(decideSpray(spray, f(100, 0, 91)), {
      window: '1h',
      recipients: 100,
      domains: 91,
      ratio: 0.91,
      floor: 100,
      maxDomains: 400,
      maxRatio: 0.9,
    })
  })

  it('fires on distinct domains above maxDomains even at a low ratio', () => {
    assert.equal(decideSpray(spray, f(5000, 0, 400)), null)
    assert.equal(decideSpray(spray, f(5000, 0, 401))?.domains, 401)
  })

  it('clamps an over-estimated domain count to the recipients', () => {
    assert.equal(decideSpray({ ...spray, maxRatio: 1 }, f(100, 0, 150)), null)
    assert.equal(decideSpray(spray, f(100, 0, 150))?.ratio, 1)
  })
})

describe('decideThrottle', () => {
  it('names the action by mode: enforce defers, shadow would have', () => {
    const d = decideThrottle({ spike: { ...spike, mode: 'shadow' }, spray }, f(600, 0, 600))
    assert.deepEqual(
      d.map((x) => [x.rule, x.mode, x.action]),
      [
        ['spike', 'shadow', 'would_defer'],
        ['spray', 'enforce', 'deferred'],
      ],
    )
  })

  it('returns nothing for ordinary traffic or with every rule off', () => {
    assert.deepEqual(decideThrottle(both, f(120, 100, 12)), [])
    assert.deepEqual(
      decideThrottle({ spike: { ...spike, mode: 'off' }, spray: { ...spray, mode: 'off' } }, f(1e6, 0, 1e6)),
      [],
    )
  })

  it('describes a decision with the rule first and its figures', () => {
    const [s, p] = decideThrottle(both, f(1201, 300, 1201))
    assert.equal(
      describeThrottle('news.example', s!),
      'spike: news.example sent 1201 recipients in the last hour, over its limit of 1200 (4 x its busiest hour in 14 days, 300; at least 500); try again later',
    )
    assert.equal(
      describeThrottle('news.example', p!),
      'spray: news.example sent to 1201 distinct recipient domains among 1201 recipients in the last hour (at most 400 domains, ratio 1 of at most 0.9); try again later',
    )
  })
})
