import assert from 'node:assert/strict'
import { it } from 'node:test'
import { networkWanted, planNetwork } from '../src/network.ts'
import { StackConfigError } from '../src/plan.ts'

// What the stack gives the services for the local network: shifted ports, and defaults that
// give way to any variable the user set (production is configuration, one variable each).

it('shifts every network port by the offset and points the services at them', () => {
  const plan = planNetwork({}, 1000)
  assert.deepEqual(plan.ports, { plc: 3582, pds: 3584, dns: 3553, sink: 3526, web: 4001 })
  assert.equal(plan.serviceDefaults.ATMOS_LABELER_INGEST_SOURCE, 'firehose')
  assert.equal(plan.serviceDefaults.ATMOS_LABELER_INGEST_FIREHOSE_URL, 'http://localhost:3584')
  assert.equal(plan.serviceDefaults.ATMOS_RELAY_DELIVERY_MX_PORT, '3526')
  for (const service of ['LABELER_VERIFY', 'RELAY_DELIVERY', 'ADMIN_ENROLL', 'FBL_INGEST'])
    assert.equal(plan.serviceDefaults[`ATMOS_${service}_DNS_PORT`], '3553', service)
  assert.deepEqual(
    plan.listeners.map((l) => `${l.what} ${l.port}`),
    ['PLC directory 3582', 'PDS 3584', 'DNS (UDP and TCP) 3553', 'sink MX 3526', 'network pages 4001'],
  )
})

it('a variable the user set wins over the default it would have been given', () => {
  const plan = planNetwork(
    { ATMOS_LABELER_INGEST_SOURCE: 'jetstream', ATMOS_RELAY_DELIVERY_MX_PORT: '25', ATMOS_LOCALNET_DNS_PORT: '5353' },
    0,
  )
  assert.equal(plan.serviceDefaults.ATMOS_LABELER_INGEST_SOURCE, undefined)
  assert.equal(plan.serviceDefaults.ATMOS_RELAY_DELIVERY_MX_PORT, undefined)
  assert.equal(plan.ports.dns, 5353)
  assert.equal(plan.serviceDefaults.ATMOS_FBL_INGEST_DNS_PORT, '5353')
  assert.equal(plan.listeners.find((l) => l.port === 5353)?.setBy, 'ATMOS_LOCALNET_DNS_PORT')
})

it('refuses a network port the services could not be told in advance', () => {
  assert.throws(() => planNetwork({ ATMOS_LOCALNET_PDS_PORT: '0' }, 0), StackConfigError)
  assert.throws(() => planNetwork({ ATMOS_LOCALNET_PDS_PORT: 'x' }, 0), /ATMOS_LOCALNET_PDS_PORT="x"/)
})

it('is on unless --no-network or ATMOS_STACK_NETWORK=off', () => {
  assert.equal(networkWanted([], {}), true)
  assert.equal(networkWanted(['--no-network'], {}), false)
  assert.equal(networkWanted([], { ATMOS_STACK_NETWORK: 'off' }), false)
  assert.throws(() => networkWanted([], { ATMOS_STACK_NETWORK: 'yes' }), /on or off/)
})
