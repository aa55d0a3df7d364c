// A stack that goes away takes its services with it: a closed terminal (SIGHUP) stops them
// cleanly, and a stack killed outright (SIGKILL, no handler runs) leaves services that notice
// and stop themselves, so that the next start does not find its ports taken.
import assert from 'node:assert/strict'
import { after, it } from 'node:test'
import { createTestDatabase } from '@atmos/testkit'
import { SERVICES } from '../src/services.ts'
import { childrenOf, stackEnv, startStack, waitForExit } from './stack-process.ts'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups) await c()
})

/** A stack of its own on a fresh database, up and ready; with the pids of its five services. */
async function readyStack() {
  const db = await createTestDatabase({ migrated: false })
  cleanups.push(db.drop)
  const stack = startStack(
    stackEnv(db.url, {
      ATMOS_RELAY_SUBMISSION_PORT: '0',
      ATMOS_LABELER_XRPC_PORT: '0',
      ATMOS_FBL_INGEST_SMTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
    }),
  )
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
  return { stack, services }
}

it('a closed terminal (SIGHUP) stops the stack and every service', async () => {
  const { stack, services } = await readyStack()
  process.kill(stack.child.pid!, 'SIGHUP')
  assert.deepEqual(await waitForExit(services, 30_000), [], 'services still running after SIGHUP')
  assert.equal(await stack.exited, 0, stack.output())
  assert.match(stack.output(), /stack: stopping all services[\s\S]*stack: stopped/)
})

it('a stack killed with SIGKILL leaves no service behind: each notices and stops', async () => {
  const { stack, services } = await readyStack()
  process.kill(stack.child.pid!, 'SIGKILL')
  await stack.exited
  assert.deepEqual(await waitForExit(services, 30_000), [], 'services still running after the stack was killed')
})
