import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { JetstreamServer } from '@atmos/testkit'
import { eventually, type LabelerHarness, startLabeler } from './helpers.ts'

// The runbook alerts on ingest lag: it must grow while the source is unreachable, not stay
// at the last event's value, and the connected gauge must say whether the source is up.

let h: LabelerHarness
let revived: JetstreamServer | undefined

before(async () => {
  h = await startLabeler({})
})

after(async () => {
  await revived?.close()
  await h?.close()
})

async function gauges(): Promise<{ connected: number; lag: number }> {
  const text = await (await fetch(`http://127.0.0.1:${h.service.ctx.ops.address!.port}/metrics`)).text()
  const value = (name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`))
    assert.ok(line, `${name} is exported`)
    return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return { connected: value('atmos_labeler_ingest_connected'), lag: value('atmos_labeler_ingest_lag_seconds') }
}

/** The gauges once `ok` holds for them (polled; the outage's length is what the test waits on). */
function gaugesWhen(ok: (g: { connected: number; lag: number }) => boolean, what: string, timeoutMs = 20_000) {
  return eventually(
    async () => {
      const g = await gauges()
      return ok(g) ? g : undefined
    },
    timeoutMs,
    what,
  )
}

it('lag grows and connected is 0 while Jetstream is unreachable; both recover when it is back', async () => {
  h.jetstream.identity('did:plc:ingesthealthaaaaaaaaaaaaa', 'before.test')
  const up = await gaugesWhen((g) => g.connected === 1, 'connected while Jetstream is up')
  assert.ok(up.lag < 5, `lag while up: ${up.lag}`)

  const port = h.jetstream.port
  await h.jetstream.close()
  const down = await gaugesWhen((g) => g.connected === 0 && g.lag >= 2, 'lag to grow past 2 s while Jetstream is down')
  const later = await gaugesWhen((g) => g.lag > down.lag, 'lag to keep growing')
  assert.equal(later.connected, 0)

  revived = await new JetstreamServer().start(port)
  const back = await gaugesWhen((g) => g.connected === 1, 'connected again once Jetstream is back')
  assert.ok(back.lag < later.lag, `lag fell on reconnection: ${back.lag} < ${later.lag}`)
  revived.identity('did:plc:ingesthealthaaaaaaaaaaaaa', 'after.test')
  await gaugesWhen((g) => g.connected === 1 && g.lag < 2, 'lag of a fresh event')
})
