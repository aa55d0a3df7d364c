// A stack that goes away takes its services with it: a closed terminal (SIGHUP) stops them
// cleanly, and a stack killed outright (SIGKILL, no handler runs) leaves services that notice
// and stop themselves, so that the next start does not find its ports taken.
import assert from 'node:assert/strict'
import { after, it } from 'node:test'
import { createTestDatabase } from '@atmos/testkit'
import { portProblems } from '../src/ports.ts'
import { LOCAL_PORTS, SERVICES } from '../src/services.ts'
import { childrenOf, stackEnv, startStack, waitForExit } from './stack-process.ts'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups) await c()
})

/** A stack of its own on a fresh database, up and ready; with the pids of its six services. */
async function readyStack() {
  const db = await createTestDatabase({ migrated: false })
  cleanups.push(db.drop)
  // Every port where the stack puts it by default, shifted by the offset.
  const env = stackEnv(db.url)
  const stack = startStack(env)
  cleanups.push(stack.stop)
  await stack.waitFor('stack: press Ctrl-C to stop')
  const services = childrenOf(stack.child.pid!)
  assert.equal(services.length, SERVICES.length, `the stack's children: ${services.join(' ')}`)
  cleanups.push(async () => {
    for (const pid of services) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
  })
  return { stack, services, offset: Number(env.ATMOS_STACK_PORT_OFFSET) }
}

/** The loopback ports the summary names, each checked free again (what the next start needs). */
async function summaryPortsStillTaken(output: string): Promise<string[]> {
  const summary = output.slice(output.indexOf('stack: all services started:'), output.indexOf('stack: press Ctrl-C'))
  const ports = [...summary.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]))
  assert.ok(ports.length >= SERVICES.length + 4, summary)
  return portProblems(
    ports.map((port) => ({ service: 'labeler', what: 'summary', host: '127.0.0.1', port, setBy: 'test' })),
  )
}

it('a closed terminal (SIGHUP) stops the stack and every service', async () => {
  const { stack, services } = await readyStack()
  process.kill(stack.child.pid!, 'SIGHUP')
  assert.deepEqual(await waitForExit(services, 30_000), [], 'services still running after SIGHUP')
  assert.equal(await stack.exited, 0, stack.output())
  assert.match(stack.output(), /stack: stopping all services[\s\S]*stack: stopped/)
  assert.deepEqual(await summaryPortsStillTaken(stack.output()), [])
})

it('a stack killed with SIGKILL leaves no service behind: each notices and stops', async () => {
  const { stack, services, offset } = await readyStack()
  // The summary shows the stack's unprivileged loopback defaults.
  const out = stack.output()
  assert.ok(out.includes(`inbound SMTP 127.0.0.1:${LOCAL_PORTS.ATMOS_FBL_INGEST_SMTP_PORT + offset} `), out)
  assert.ok(out.includes(`submission 127.0.0.1:${LOCAL_PORTS.ATMOS_RELAY_SUBMISSION_PORT + offset} `), out)
  assert.ok(out.includes(`label API http://127.0.0.1:${LOCAL_PORTS.ATMOS_LABELER_XRPC_PORT + offset}/`), out)
  assert.ok(out.includes(`admin web http://127.0.0.1:${LOCAL_PORTS.ATMOS_ADMIN_WEB_PORT + offset} `), out)
  process.kill(stack.child.pid!, 'SIGKILL')
  await stack.exited
  assert.deepEqual(await waitForExit(services, 30_000), [], 'services still running after the stack was killed')
  assert.deepEqual(await summaryPortsStillTaken(out), [])
})
