import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { after, before, it } from 'node:test'
import { deliverMessage, TypedQueue } from '@atmos/queues'
import { closedPort } from '@atmos/testkit'
import { Redis } from 'ioredis'
import {
  type DeliveryWorld,
  eventually,
  final,
  seedMember,
  spoolMessage,
  startDeliveryWorld,
} from './delivery-helpers.ts'

// Every line a service writes is a JSON log line, bullmq's own errors included. This test's
// Redis is a redis-server of its own (the machine's shared one serves the other tests),
// killed while a delivery job is in flight and started again empty: bullmq then fails to
// renew the job's lock and to finish a job whose keys are gone.

let world: DeliveryWorld
let port: number
let redisServer: ChildProcess | undefined

async function startRedisServer(): Promise<void> {
  redisServer = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
    { stdio: 'ignore' },
  )
  const probe = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 50, lazyConnect: true })
  probe.on('error', () => {})
  try {
    await eventually(() => probe.ping().catch(() => undefined), 10_000, `redis-server on port ${port}`)
  } finally {
    probe.disconnect()
  }
}

async function killRedisServer(): Promise<void> {
  const server = redisServer
  redisServer = undefined
  if (!server || server.exitCode !== null) return
  const exited = new Promise((resolve) => server.once('exit', resolve))
  server.kill('SIGKILL')
  await exited
}

before(async () => {
  port = await closedPort()
  await startRedisServer()
  world = await startDeliveryWorld(
    'json-logs',
    { a: '127.0.0.6' },
    {
      'json-logs.test': { MX: [{ priority: 10, exchange: 'mx.json-logs.test' }] },
      'mx.json-logs.test': { A: ['127.0.0.6'] },
    },
  )
})

after(async () => {
  await world?.close()
  await killRedisServer()
})

it('a delivery process that loses Redis mid-job writes nothing but JSON lines, bullmq errors included', async (t) => {
  const sink = world.sinks.a!
  const redisUrl = `redis://127.0.0.1:${port}/0`
  const proc = await world.startProcess(
    world.env({
      ATMOS_REDIS_URL: redisUrl,
      // A slow DATA reply keeps the job in flight across the outage.
      ATMOS_RELAY_DELIVERY_SOCKET_TIMEOUT: '20s',
    }),
  )
  sink.dataDelayMs = 2500
  const memberId = await seedMember(world.sql, 'member.example')
  const spooled = await spoolMessage(world.sql, { memberId, to: 'someone@json-logs.test' })
  const producer = new Redis(redisUrl, { maxRetriesPerRequest: null })
  try {
    await new TypedQueue(deliverMessage, producer, world.prefix).enqueue({ messageId: spooled.messageId })
  } finally {
    producer.disconnect()
  }
  await eventually(async () => (sink.open > 0 ? true : undefined), 15_000, 'the delivery session to open')

  // Redis dies with the job active and comes back empty: its lock and keys are gone.
  await killRedisServer()
  await startRedisServer()

  const logged = await proc.waitForLog((l) => l.msg === 'queue error', 20_000)
  assert.equal(logged.level, 'warn')
  assert.equal(logged.queue, 'deliver-message')
  assert.equal(typeof logged.err, 'string')
  // Postgres is the record: the message is delivered all the same.
  assert.equal((await final(world.sql, spooled.recipientId, 20_000)).state, 'delivered')

  const exit = await proc.stop('SIGTERM')
  const errors = proc.logs.filter((l) => l.msg === 'queue error').map((l) => `${l.role}: ${l.err}`)
  t.diagnostic(`queue errors logged: ${errors.join(' | ')}`)
  assert.equal(exit.code, 0, proc.dump())
  const notJson = proc.logs.filter((l) => l.unparsed).map((l) => l.msg)
  assert.deepEqual(notJson, [], 'every stdout line is JSON')
  assert.equal(proc.stderr, '', 'nothing on stderr')
})
