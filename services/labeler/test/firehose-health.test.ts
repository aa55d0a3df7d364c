import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { ingestCursors } from '@atmos/db'
import { createTestDatabase, type TestDatabase, TestDnsServer } from '@atmos/testkit'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { labelerConfigSchema } from '../src/config.ts'
import { LabelerService } from '../src/service.ts'
import { ingestGaugesWhen, labelerEnv } from './helpers.ts'

// A PDS with nothing to say for hours is connected, not down: the connected gauge follows
// the firehose's socket (open, then gone), not the arrival of events, and the lag of a
// connected, idle source does not grow. The runbook's two alerts read exactly these.
describe('the firehose source reports its socket, not its traffic', () => {
  let tdb: TestDatabase
  let dns: TestDnsServer
  let network: TestNetworkNoAppView
  let service: LabelerService
  let pdsClosed = false

  before(async () => {
    process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'atmos-pds-'))
    // No account is created: the PDS's firehose never carries an event in this test.
    network = await TestNetworkNoAppView.create({})
    tdb = await createTestDatabase()
    dns = new TestDnsServer({})
    await dns.start()
    const setup = await labelerEnv({
      databaseUrl: tdb.url,
      jetstreamUrl: 'ws://127.0.0.1:9/unused',
      dnsPort: dns.port,
      plcUrl: network.plc.url,
    })
    const env = {
      ...setup.env,
      ATMOS_LABELER_INGEST_SOURCE: 'firehose',
      ATMOS_LABELER_INGEST_FIREHOSE_URL: network.pds.url,
    }
    service = await LabelerService.create(loadConfig(labelerConfigSchema, { env }))
    await service.start()
    await service.whenStarted()
  })

  after(async () => {
    await service?.destroy()
    await dns?.close()
    await tdb?.drop()
    if (!pdsClosed) await network?.pds.close()
    await network?.plc.close()
  })

  it('is connected, with no lag, as soon as the socket is open and before any event', async () => {
    const up = await ingestGaugesWhen(service, (g) => g.connected === 1, 'connected to a PDS that sends nothing')
    assert.equal(up.events, 0, 'no event has come through the firehose')
    assert.equal(up.lag, 0, 'a connected source with nothing to send is not behind')
    assert.deepEqual(await service.ctx.db.select().from(ingestCursors), [], 'no cursor saved: nothing was read')
  })

  it('is disconnected, with a growing lag, once the PDS goes away', async () => {
    await ingestGaugesWhen(service, (g) => g.connected === 1, 'connected before the PDS goes')
    await network.pds.close()
    pdsClosed = true
    const down = await ingestGaugesWhen(
      service,
      (g) => g.connected === 0 && g.lag > 0,
      'disconnected once the PDS is gone',
    )
    const later = await ingestGaugesWhen(service, (g) => g.lag > down.lag, 'lag to keep growing while the PDS is gone')
    assert.equal(later.connected, 0)
  })
})
