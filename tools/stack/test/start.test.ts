import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, it } from 'node:test'
import { createTestDatabase } from '@atmos/testkit'
import { SERVICES } from '../src/services.ts'
import { stackEnv, startStack } from './stack-process.ts'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups) await c()
})

it("the README's start command brings all five services up ready, names every listener, and Ctrl-C stops them with exit 0", async () => {
  const db = await createTestDatabase({ migrated: false })
  await db.drop() // the start command must create it
  cleanups.push(db.drop)
  const env = stackEnv(db.url, {
    ATMOS_RELAY_SUBMISSION_PORT: '0',
    ATMOS_LABELER_XRPC_PORT: '0',
    ATMOS_FBL_INGEST_SMTP_PORT: '0',
    ATMOS_ADMIN_WEB_PORT: '0',
  })
  const offset = Number(env.ATMOS_STACK_PORT_OFFSET)
  const stack = startStack(env)
  cleanups.push(stack.stop)

  await stack.waitFor('stack: press Ctrl-C to stop')
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

  process.kill(stack.child.pid!, 'SIGINT')
  assert.equal(await stack.exited, 0, stack.output())
  assert.match(stack.output(), /stack: stopped/)
})

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
