import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ConfigError, loadConfig } from '@atmos/config'
import type { Pool } from '@atmos/db'
import type { MxSink, TestDnsServer } from '@atmos/testkit'
import { relayConfigSchema } from '../src/config.ts'
import { AddressPolicy } from '../src/delivery/address-policy.ts'
import {
  type DeliveryWorld,
  enqueueDelivery,
  final,
  seedMember,
  spoolMessage,
  startDelivery,
  startDeliveryWorld,
} from './delivery-helpers.ts'

// The relay refuses to deliver to internal networks: here only 127.0.0.2 is allowed, so the
// sink on 127.0.0.3 stands for a host on an internal network (it would accept the mail).

let world: DeliveryWorld
let sql: Pool
let dns: TestDnsServer
let sinks: Record<string, MxSink>
let stopDelivery: () => Promise<void>
let memberId: number

before(async () => {
  world = await startDeliveryWorld(
    'addrpolicy',
    { allowed: '127.0.0.2', internal: '127.0.0.3' },
    {
      'mx-allowed.policy.test': { A: ['127.0.0.2'] },
      'mx-internal.policy.test': { A: ['127.0.0.3'] },
      'mx-private.policy.test': { A: ['10.20.30.40', '169.254.169.254'], AAAA: ['fe80::1', '::ffff:127.0.0.3'] },
      'mx-mixed.policy.test': { A: ['127.0.0.3', '127.0.0.2'] },
    },
  )
  ;({ sql, dns, sinks } = world)
  const running = await startDelivery(world.env({ ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS: '127.0.0.2/32' }))
  stopDelivery = running.stop
  memberId = await seedMember(sql, 'member.example')
})

after(async () => {
  await stopDelivery?.()
  await world?.close()
})

async function send(to: string) {
  const spooled = await spoolMessage(sql, { memberId, to })
  await enqueueDelivery(world.prefix, [spooled.messageId])
  return spooled
}

async function attempts(recipientId: number) {
  return sql<{ outcome: string; reply_code: number | null; enhanced_status: string | null; reply: string }[]>`
    select outcome, reply_code, enhanced_status, reply from delivery_attempts where recipient_id = ${recipientId} order by id`
}

describe('delivery to internal addresses', () => {
  it('bounces a domain whose every MX address is internal, naming the addresses, without connecting', async () => {
    dns.set('internal-only.test', {
      MX: [
        { priority: 10, exchange: 'mx-internal.policy.test' },
        { priority: 20, exchange: 'mx-private.policy.test' },
      ],
    })
    const { recipientId } = await send('ian@internal-only.test')
    const row = await final(sql, recipientId)
    assert.equal(row.state, 'bounced')
    const [attempt, ...more] = await attempts(recipientId)
    assert.equal(more.length, 0)
    assert.equal(attempt?.outcome, 'failed')
    assert.equal(attempt?.reply_code, 550)
    assert.equal(attempt?.enhanced_status, '5.4.4')
    for (const address of ['127.0.0.3', '10.20.30.40', '169.254.169.254']) {
      assert.ok(attempt?.reply.includes(address), `${attempt?.reply} names ${address}`)
    }
    assert.equal(sinks.internal!.sessions, 0)
  })

  it('bounces a domain without MX whose own address is internal', async () => {
    dns.set('bare-internal.test', { A: ['127.0.0.3'] })
    const { recipientId } = await send('bo@bare-internal.test')
    assert.equal((await final(sql, recipientId)).state, 'bounced')
    const [attempt] = await attempts(recipientId)
    assert.equal(attempt?.enhanced_status, '5.4.4')
    assert.match(attempt?.reply ?? '', /bare-internal\.test 127\.0\.0\.3/)
    assert.equal(sinks.internal!.sessions, 0)
  })

  it('uses only the public addresses of a domain that has both', async () => {
    // The internal host has the better preference, and the mixed host lists its internal address first.
    dns.set('mixed.test', {
      MX: [
        { priority: 5, exchange: 'mx-internal.policy.test' },
        { priority: 10, exchange: 'mx-mixed.policy.test' },
        { priority: 20, exchange: 'mx-allowed.policy.test' },
      ],
    })
    const { recipientId } = await send('max@mixed.test')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    assert.equal(sinks.allowed!.to('max@mixed.test').length, 1)
    assert.equal(sinks.internal!.sessions, 0)
  })
})

describe('address policy', () => {
  const policy = new AddressPolicy()

  it('refuses loopback, private, link-local, CGNAT, multicast, documentation and reserved IPv4', () => {
    for (const a of [
      '0.0.0.0',
      '0.1.2.3',
      '10.0.0.1',
      '100.64.0.1',
      '100.127.255.254',
      '127.0.0.1',
      '127.255.255.255',
      '169.254.169.254',
      '172.16.0.1',
      '172.31.255.255',
      '192.0.0.8',
      '192.0.2.10',
      '192.168.1.1',
      '198.18.0.1',
      '198.19.255.255',
      '198.51.100.7',
      '203.0.113.9',
      '224.0.0.1',
      '239.255.255.250',
      '240.0.0.1',
      '255.255.255.255',
    ]) {
      assert.ok(policy.refusal(a), `${a} refused`)
    }
  })

  it('refuses the IPv6 equivalents, and IPv4 internal addresses carried in IPv6', () => {
    for (const a of [
      '::',
      '::1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::ffff:10.0.0.1',
      '::127.0.0.1',
      '64:ff9b::10.0.0.1',
      '64:ff9b::a9fe:a9fe',
      '2002:c0a8:0101::1',
      'fc00::1',
      'fd12:3456::1',
      'fe80::1',
      'fe80::1%eth0',
      'fec0::1',
      'ff02::1',
      '2001:db8::1',
      '2001::1',
      '100::1',
    ]) {
      assert.ok(policy.refusal(a), `${a} refused`)
    }
    assert.ok(policy.refusal('mx.example.com'), 'a name is not an address')
  })

  it('lets public addresses through, also when carried in IPv6', () => {
    for (const a of [
      '8.8.8.8',
      '1.1.1.1',
      '100.63.255.255',
      '100.128.0.0',
      '172.32.0.1',
      '192.0.3.1',
      '198.20.0.1',
      '223.255.255.254',
      '2a00:1450:4001:80b::201a',
      '2606:4700::6810:85e5',
      '::ffff:8.8.8.8',
      '64:ff9b::8.8.8.8',
      '2002:0808:0808::1',
    ]) {
      assert.equal(policy.refusal(a), undefined, `${a} allowed`)
    }
  })

  it('lets listed networks through, in either family and form', () => {
    const allowing = new AddressPolicy(['127.0.0.0/8', 'fd00::/8', '10.1.2.3'])
    assert.equal(allowing.refusal('127.0.0.2'), undefined)
    assert.equal(allowing.refusal('::ffff:127.0.0.2'), undefined)
    assert.equal(allowing.refusal('fd00::25'), undefined)
    assert.equal(allowing.refusal('10.1.2.3'), undefined)
    assert.ok(allowing.refusal('10.1.2.4'))
    assert.ok(allowing.refusal('::1'))
    assert.throws(() => new AddressPolicy(['10.0.0.0/33']), /CIDR/)
  })

  it('refuses a setting that is not a list of networks at start', () => {
    const load = (value: string) =>
      loadConfig(relayConfigSchema, { env: { ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS: value } })
    assert.deepEqual(load('127.0.0.0/8, ::1/128').relay.delivery.allowedPrivateNetworks, ['127.0.0.0/8', '::1/128'])
    assert.throws(
      () => load('127.0.0.0/8,localhost'),
      (err: Error) => err instanceof ConfigError && /relay\.delivery\.allowedPrivateNetworks/.test(err.message),
    )
    assert.deepEqual(loadConfig(relayConfigSchema, { env: {} }).relay.delivery.allowedPrivateNetworks, [])
  })
})
