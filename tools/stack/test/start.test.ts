import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createTestDatabase, TEST_REDIS_URL, testRedisPrefix } from '@atmos/testkit'
import { SERVICES } from '../src/services.ts'

const startScript = fileURLToPath(new URL('../../../scripts/start.sh', import.meta.url))
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups) await c()
})

it("the README's start command brings all five services up ready, and Ctrl-C stops them with exit 0", async () => {
  const db = await createTestDatabase({ migrated: false })
  await db.drop() // the start command must create it
  cleanups.push(db.drop)
  const offset = 1000 + Math.floor(Math.random() * 20_000)
  const state = mkdtempSync(join(tmpdir(), 'atmos-stack-'))
  const child = spawn('bash', [startScript], {
    env: {
      ...process.env,
      ATMOS_DATABASE_URL: db.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: testRedisPrefix('stack'),
      ATMOS_STACK_PORT_OFFSET: String(offset),
      ATMOS_STACK_QUIET: '1',
      ATMOS_LABELER_SIGNING_KEY_FILE: join(state, 'label-signing.key'),
      ATMOS_RELAY_KEK_FILE: join(state, 'relay', 'kek'),
      ATMOS_RELAY_POOL_TOKEN_SECRET_FILE: join(state, 'pool', 'token.secret'),
      ATMOS_RELAY_POOL_KEK_FILE: join(state, 'pool', 'kek'),
      ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE: join(state, 'relay', 'tls.crt'),
      ATMOS_RELAY_SUBMISSION_TLS_KEY_FILE: join(state, 'relay', 'tls.key'),
      ATMOS_RELAY_SUBMISSION_PORT: '0',
      ATMOS_LABELER_XRPC_PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  child.stderr.on('data', (d) => {
    out += d
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  cleanups.push(async () => {
    if (child.exitCode !== null) return
    // The services run in process groups of their own: only the stack's own stop reaches
    // them, so ask it first and kill its group only if it does not finish.
    process.kill(child.pid!, 'SIGINT')
    const stopped = await Promise.race([
      exited.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 20_000)),
    ])
    if (!stopped) process.kill(-child.pid!, 'SIGKILL')
  })

  const deadline = Date.now() + 90_000
  while (!out.includes('stack: press Ctrl-C to stop')) {
    assert.ok(Date.now() < deadline, `stack did not come up:\n${out}`)
    assert.equal(child.exitCode, null, `stack exited early:\n${out}`)
    await new Promise((r) => setTimeout(r, 200))
  }
  for (const service of SERVICES) {
    const base = `http://127.0.0.1:${service.port + offset}`
    assert.match(out, new RegExp(`${service.name}\\s+ops ${base}`))
    const res = await fetch(`${base}/readyz`)
    assert.equal(res.status, 200, `${service.name}: ${await res.text()}`)
  }
  assert.match(out, /stack: created signing key .*: did:key:zQ3s/)
  // The relay's first-start files: a certificate, the KEK and token secret, the pool DKIM key.
  assert.match(out, /stack: created a self-signed certificate .*tls\.crt for submission/)
  assert.match(out, /stack: relay keys: created pool DKIM key pool1\._domainkey\..* \(sealed under .*pool\/kek\)/)
  const smtp = /stack:\s+submission (127\.0\.0\.1:\d+)\s+\(STARTTLS/.exec(out)
  assert.ok(smtp, out)
  const greeting = await smtpGreeting(smtp[1]!)
  assert.match(greeting, /^220 /)
  process.kill(child.pid!, 'SIGINT')
  assert.equal(await exited, 0, out)
  assert.match(out, /stack: stopped/)
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
