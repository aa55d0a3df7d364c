import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { LocalNetwork } from '../src/network.ts'
import { type Fixture, startNetwork } from './helpers.ts'

// The atproto half: a demo account that signs in, and that is the same account (DID and
// password) after the network is stopped and started again on the same state directory.

describe('the local network: PLC, PDS and the demo account', () => {
  let f: Fixture

  before(async () => {
    f = await startNetwork()
  })
  after(async () => {
    await f?.close()
  })

  it('the demo account signs in on the PDS (createSession) and its DID is on the PLC', async () => {
    const info = f.network.info()
    const agent = new AtpAgent({ service: info.pdsUrl })
    const session = await agent.com.atproto.server.createSession({
      identifier: info.demo.handle,
      password: info.demo.password,
    })
    assert.equal(session.data.did, info.demo.did)
    assert.match(info.demo.did, /^did:plc:[a-z2-7]{24}$/)
    const doc = (await (await fetch(`${info.plcUrl}/${info.demo.did}`)).json()) as { alsoKnownAs: string[] }
    assert.deepEqual(doc.alsoKnownAs, [`at://${info.demo.handle}`])
  })

  it('keeps its secrets in files only its owner reads', () => {
    for (const file of [
      'demo.password',
      'secrets/pds-jwt.secret',
      'secrets/pds-admin.password',
      'secrets/pds-plc-rotation.key',
      'secrets/sink-dkim.key',
    ])
      assert.equal(statSync(join(f.stateDir, file)).mode & 0o777, 0o600, file)
  })

  it('after stop and start on the same state directory the demo DID and password are the same, and its DID document follows the PDS to its new port', async () => {
    const first = f.network.info()
    await f.network.stop()
    // Another port this time (another ATMOS_STACK_PORT_OFFSET): the DID document follows it.
    f.network = new LocalNetwork(f.options)
    const second = await f.network.start()
    assert.equal(second.demo.did, first.demo.did)
    assert.equal(second.demo.password, first.demo.password)
    const agent = new AtpAgent({ service: second.pdsUrl })
    await agent.login({ identifier: second.demo.handle, password: second.demo.password })
    assert.equal(agent.session?.did, first.demo.did)
    assert.notEqual(second.pdsUrl, first.pdsUrl)
    const doc = (await (await fetch(`${second.plcUrl}/${first.demo.did}`)).json()) as {
      service: { id: string; serviceEndpoint: string }[]
    }
    assert.equal(doc.service.find((s) => s.id === '#atproto_pds')?.serviceEndpoint, second.pdsUrl)
  })
})
