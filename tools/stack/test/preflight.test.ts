// What the stack refuses before it starts anything: a port already taken, and a setting
// that is not valid, each named by the variable that sets it, with a non-zero exit at once.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:net'
import { after, it } from 'node:test'
import { SERVICES } from '../src/services.ts'
import { stackEnv, startStack } from './stack-process.ts'

// Nothing below reaches the database: the checks come first. A name that does not exist
// makes a check that came too late fail loudly.
const NO_DATABASE = 'postgres://root@127.0.0.1:5432/atmos_stack_never_created'

const servers: Server[] = []
after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r))
})

async function holdPort(port: number): Promise<void> {
  const server = createServer()
  servers.push(server)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
}

/**
 * Holds the ports `pick` names for a random draw, drawing again when one is in use (another
 * test's listener): the test needs ports that only it holds.
 */
async function holdDrawn<T>(pick: (draw: number) => { ports: number[]; value: T }): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const { ports, value } = pick(Math.random())
    const held = servers.length
    try {
      for (const port of ports) await holdPort(port)
      return value
    } catch (err) {
      for (const server of servers.splice(held)) server.close()
      if (attempt >= 20) throw err
    }
  }
}

async function runToExit(extra: Record<string, string>) {
  const stack = startStack(stackEnv(NO_DATABASE, extra), 'stack.ts')
  const code = await stack.exited
  return { code, out: stack.output() }
}

it('a taken ops port stops the start at once, naming the port, the service and the variable', async () => {
  const relay = SERVICES.find((s) => s.name === 'relay')!
  const { offset, port } = await holdDrawn((draw) => {
    const offset = 1000 + Math.floor(draw * 20_000)
    return { ports: [relay.port + offset], value: { offset, port: relay.port + offset } }
  })
  const { code, out } = await runToExit({ ATMOS_STACK_PORT_OFFSET: String(offset) })
  assert.equal(code, 1, out)
  assert.ok(
    out.includes(
      `stack: port ${port} is taken: 127.0.0.1:${port} (relay ops, set by ATMOS_STACK_PORT_OFFSET (8102 + offset))`,
    ),
    out,
  )
  assert.match(out, /stack: nothing started/)
  assert.doesNotMatch(out, /migration|database/)
})

it("a taken listener port (fbl-ingest's inbound SMTP) names its own variable", async () => {
  const port = await holdDrawn((draw) => {
    const port = 30_000 + Math.floor(draw * 20_000)
    return { ports: [port], value: port }
  })
  const { code, out } = await runToExit({ ATMOS_FBL_INGEST_SMTP_PORT: String(port) })
  assert.equal(code, 1, out)
  assert.ok(
    out.includes(
      `port ${port} is taken: 127.0.0.1:${port} (fbl-ingest inbound SMTP, set by ATMOS_FBL_INGEST_SMTP_PORT)`,
    ),
    out,
  )
})

it('an ATMOS_HTTP_PORT is reported by the stack, by name, and nothing starts', async () => {
  for (const value of ['not-a-port', '8200']) {
    const { code, out } = await runToExit({ ATMOS_HTTP_PORT: value })
    assert.equal(code, 2, out)
    assert.match(out, /stack: invalid configuration, nothing started:/)
    assert.ok(out.includes(`ATMOS_HTTP_PORT="${value}" is set, but the stack gives each service its own ops port`), out)
    assert.match(out, /ATMOS_STACK_PORT_OFFSET/)
    assert.doesNotMatch(out, /labeler init/)
  }
})

it("any service's invalid setting is reported by the stack with the variable's name", async () => {
  const { code, out } = await runToExit({
    ATMOS_RELAY_SUBMISSION_PORT: '70000',
    ATMOS_LABELER_XRPC_PORT: 'abc',
  })
  assert.equal(code, 2, out)
  assert.match(out, /stack: invalid configuration, nothing started:/)
  assert.match(out, /labeler: invalid configuration:\s+labeler\.xrpc\.port \(from ATMOS_LABELER_XRPC_PORT\)/)
  assert.match(out, /relay: invalid configuration:\s+relay\.submission\.port \(from ATMOS_RELAY_SUBMISSION_PORT\)/)
  assert.doesNotMatch(out, /labeler init/)
  // Only what was set wrong is named: not a setting the stack derives from it.
  assert.doesNotMatch(out, /admin/)
})

it('an ATMOS_STACK_PORT_OFFSET that would push a port past 65535 is refused by name', async () => {
  const { code, out } = await runToExit({ ATMOS_STACK_PORT_OFFSET: '60000' })
  assert.equal(code, 2, out)
  assert.match(out, /ATMOS_STACK_PORT_OFFSET="60000": a whole number from 0 to \d+/)
})

it('with the local network on, its ports are checked too, and --no-network leaves them out', async () => {
  const relayOpsBase = SERVICES.find((s) => s.name === 'relay')!.port
  const { offset, pds, relayOps } = await holdDrawn((draw) => {
    const offset = 1000 + Math.floor(draw * 20_000)
    const value = { offset, pds: 2584 + offset, relayOps: relayOpsBase + offset }
    return { ports: [value.pds, value.relayOps], value }
  })
  const on = await runToExit({ ATMOS_STACK_PORT_OFFSET: String(offset), ATMOS_STACK_NETWORK: 'on' })
  assert.equal(on.code, 1, on.out)
  assert.ok(
    on.out.includes(
      `port ${pds} is taken: 127.0.0.1:${pds} (localnet PDS, set by ATMOS_STACK_PORT_OFFSET (2584 + offset))`,
    ),
    on.out,
  )
  const stack = startStack(
    stackEnv(NO_DATABASE, { ATMOS_STACK_PORT_OFFSET: String(offset), ATMOS_STACK_NETWORK: 'on' }),
    'stack.ts',
    ['--no-network'],
  )
  const off = { code: await stack.exited, out: stack.output() }
  assert.equal(off.code, 1, off.out)
  assert.ok(off.out.includes(`port ${relayOps} is taken`), off.out)
  assert.doesNotMatch(off.out, /localnet/)
})

it('an unknown argument or ATMOS_STACK_NETWORK value is refused by name', async () => {
  const bad = await runToExit({ ATMOS_STACK_NETWORK: 'maybe' })
  assert.equal(bad.code, 2, bad.out)
  assert.ok(bad.out.includes('ATMOS_STACK_NETWORK="maybe": on or off'), bad.out)
  const stack = startStack(stackEnv(NO_DATABASE), 'stack.ts', ['--network-please'])
  assert.equal(await stack.exited, 2, stack.output())
  assert.match(stack.output(), /unknown argument "--network-please": the start command takes --no-network only/)
})
