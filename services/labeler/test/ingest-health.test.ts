import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { JetstreamServer } from '@atmos/testkit'
import { type IngestGauges, ingestGaugesWhen, type LabelerHarness, startLabeler } from './helpers.ts'

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

const gaugesWhen = (ok: (g: IngestGauges) => boolean, what: string) => ingestGaugesWhen(h.service, ok, what, 20_000)

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
