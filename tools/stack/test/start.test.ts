import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { after, it } from 'node:test'
import { createTestDatabase, TEMPLATE_DATABASE_URL } from '@atmos/testkit'
import postgres from 'postgres'
import { SERVICES } from '../src/services.ts'
import { childrenOf, stackEnv, startStack } from './stack-process.ts'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups) await c()
})

it("the README's start command brings the local network and all six services up ready, names every listener, and Ctrl-C stops them with exit 0", async () => {
  const db = await createTestDatabase({ migrated: false })
  await db.drop() // the start command must create it
  cleanups.push(db.drop)
  const plcDatabase = `${db.name}_localnet_plc`
  cleanups.push(() => dropDatabase(plcDatabase))
  const env = stackEnv(db.url, {
    ATMOS_STACK_NETWORK: 'on',
    ATMOS_RELAY_SUBMISSION_PORT: '0',
    ATMOS_LABELER_XRPC_PORT: '0',
    ATMOS_FBL_INGEST_SMTP_PORT: '0',
    ATMOS_ADMIN_WEB_PORT: '0',
  })
  const offset = Number(env.ATMOS_STACK_PORT_OFFSET)
  const stack = startStack(env)
  cleanups.push(stack.stop)

  // Generous: the network (a PDS among it) and six services start on a busy two-core machine.
  await stack.waitFor('stack: press Ctrl-C to stop', 300_000)
  const out = stack.output()
  const summary = out.slice(out.indexOf('stack: all services started:'))
  for (const service of SERVICES) {
    const base = `http://127.0.0.1:${service.port + offset}`
    assert.match(summary, new RegExp(`stack:\\s+${service.name}\\s+ops ${base}`))
    const res = await fetch(`${base}/readyz`)
    assert.equal(res.status, 200, `${service.name}: ${await res.text()}`)
  }
  assert.match(out, /stack: created signing key .*: did:key:zQ3s/)
  // The relay's first-start files: a certificate, the KEK and token secret, the pool DKIM key.
  assert.match(out, /stack: created a self-signed certificate .*tls\.crt for submission/)
  assert.match(out, /stack: relay keys: created pool DKIM key pool1\._domainkey\..* \(sealed under .*pool\/kek\)/)

  // Every listener is in the summary, on loopback, and answers there.
  const label =
    /stack:\s+labeler\s+label API (http:\/\/127\.0\.0\.1:\d+)\/xrpc\/com\.atproto\.label\.queryLabels\?uriPatterns=\*\s+and ws:\/\/127\.0\.0\.1:\d+\/xrpc\/com\.atproto\.label\.subscribeLabels/.exec(
      summary,
    )
  assert.ok(label, summary)
  const labels = await fetch(`${label[1]}/xrpc/com.atproto.label.queryLabels?uriPatterns=*`)
  assert.equal(labels.status, 200, await labels.text())
  const web = /stack:\s+admin\s+admin web (http:\/\/127\.0\.0\.1:\d+)/.exec(summary)
  assert.ok(web, summary)
  const page = await fetch(web[1]!, { redirect: 'manual' })
  // Its sign-in page (503 "not available" here: this stack has no admin KEK).
  assert.match(await page.text(), /<title>[^<]*Atmosphere Mail<\/title>/)
  const submission = /stack:\s+relay\s+submission (127\.0\.0\.1:\d+)\s+\(STARTTLS/.exec(summary)
  assert.ok(submission, summary)
  assert.match(await smtpGreeting(submission[1]!), /^220 /)
  const inbound = /stack:\s+fbl-ingest\s+inbound SMTP (127\.0\.0\.1:\d+)/.exec(summary)
  assert.ok(inbound, summary)
  assert.match(await smtpGreeting(inbound[1]!), /^220 /)

  // The local network: its listeners at their offset ports, the demo account's credentials,
  // and the labeler reading the PDS's firehose instead of Jetstream.
  const pds = `http://localhost:${2584 + offset}`
  assert.ok(summary.includes(`stack:   localnet   PDS ${pds}`), summary)
  assert.ok(summary.includes(`stack:   localnet   PLC directory http://127.0.0.1:${2582 + offset}`), summary)
  assert.ok(summary.includes(`stack:   localnet   DNS 127.0.0.1:${2553 + offset}`), summary)
  assert.ok(summary.includes(`stack:   localnet   sink MX 127.0.0.1:${2526 + offset}`), summary)
  assert.ok(summary.includes(`stack:   localnet   pages http://127.0.0.1:${3001 + offset}`), summary)
  const demo = /stack:\s+localnet\s+demo account (\S+)\s+password (\S+)\s+\((did:plc:[a-z2-7]+)\)/.exec(summary)
  assert.ok(demo, summary)
  const session = await fetch(`http://127.0.0.1:${2584 + offset}/xrpc/com.atproto.server.createSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: demo[1], password: demo[2] }),
  })
  assert.equal(session.status, 200, await session.clone().text())
  const { did } = (await session.json()) as { did: string }
  assert.equal(did, demo[3])
  // Connected as soon as the labeler's socket to the PDS's firehose is open, though the PDS
  // may have nothing to send for hours.
  await eventually('the labeler connected to the firehose', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${8101 + offset}/metrics`)).text()
    return /^atmos_labeler_ingest_connected(\{[^}]*\})? 1$/m.test(metrics) ? true : undefined
  })
  const labelerEnv = `/proc/${labelerPid(stack.child.pid!)}/environ`
  const environ = readFileSync(labelerEnv, 'utf8').split('\0')
  assert.ok(environ.includes('ATMOS_LABELER_INGEST_SOURCE=firehose'), 'the labeler reads a firehose')
  assert.ok(environ.includes(`ATMOS_LABELER_INGEST_FIREHOSE_URL=${pds}`), "that firehose is the local PDS's")

  process.kill(stack.child.pid!, 'SIGINT')
  assert.equal(await stack.exited, 0, stack.output())
  assert.match(stack.output(), /stack: stopped/)
})

async function eventually<T>(what: string, check: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** The labeler the stack started: the child whose command line runs its entry point. */
function labelerPid(stackPid: number): number {
  const pid = childrenOf(stackPid).find((p) =>
    readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('services/labeler/src/index.ts'),
  )
  assert.ok(pid, 'a labeler process')
  return pid
}

async function dropDatabase(name: string): Promise<void> {
  const admin = new URL(TEMPLATE_DATABASE_URL)
  admin.pathname = '/postgres'
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} })
  try {
    await sql.unsafe(`drop database if exists "${name.replace(/"/g, '""')}" with (force)`)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/** The first line a server sends on connect. */
function smtpGreeting(hostPort: string): Promise<string> {
  const [host, port] = hostPort.split(':')
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), host!)
    socket.setEncoding('utf8')
    socket.once('data', (line: string) => {
      socket.destroy()
      resolve(line)
    })
    socket.once('error', reject)
  })
}
