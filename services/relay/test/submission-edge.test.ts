import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { closeBaseContext } from '@atmos/runtime'
import type { AddedMember } from '../src/members/store.ts'
import { Submission } from '../src/submission/index.ts'
import { eventually } from './delivery-helpers.ts'
import {
  createMember,
  type Harness,
  relayContext,
  rfc822,
  SmtpDialog,
  spooled,
  startSubmission,
  submitRaw,
} from './helpers.ts'

// The submission edge against hostile peers: AUTH only inside TLS, and no address can
// hold the listener with connections it trickles bytes into.

/** A raw connection from a loopback address of our choice, with what the server wrote so far. */
function rawClient(port: number, localAddress: string): { socket: Socket; text: () => string; closed: Promise<void> } {
  const socket = connect({ port, host: '127.0.0.1', localAddress })
  let text = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    text += chunk
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { socket, text: () => text, closed }
}

/** A dialog through STARTTLS and a login. */
async function loggedIn(port: number, m: AddedMember): Promise<{ dialog: SmtpDialog; auth: string }> {
  const { dialog } = await SmtpDialog.open(port)
  await dialog.send('EHLO c.example')
  await dialog.starttls()
  await dialog.send('EHLO c.example')
  return { dialog, auth: await dialog.login(m.username, m.password) }
}

const message = (domain: string) => rfc822({ From: `a@${domain}`, To: 'x@dest.example', Subject: 'edge' }, 'hello\r\n')

describe('submission edge, default limits', () => {
  let h: Harness
  let member: AddedMember

  before(async () => {
    h = await startSubmission({ ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_MEMBER: '3' })
    member = await createMember(h, 'edge.example')
  })
  after(async () => {
    await h?.close()
  })

  it('advertises and accepts AUTH only inside TLS: 530 5.7.0 before it, and never a password prompt', async () => {
    const { dialog } = await SmtpDialog.open(h.port)
    try {
      const ehlo = await dialog.send('EHLO client.example')
      assert.match(ehlo, /STARTTLS/)
      assert.doesNotMatch(ehlo, /AUTH/, 'no AUTH offered in clear')
      // LOGIN would prompt for the user name, then the password, in clear (334); it is refused first.
      assert.equal(await dialog.send('AUTH LOGIN'), '530 5.7.0 Must issue a STARTTLS command first')
      assert.equal(await dialog.send('AUTH PLAIN'), '530 5.7.0 Must issue a STARTTLS command first')
      assert.equal(
        await dialog.login(member.username, member.password),
        '530 5.7.0 Must issue a STARTTLS command first',
      )
      await dialog.starttls()
      assert.match(await dialog.send('EHLO client.example'), /^250-AUTH PLAIN LOGIN\r?$/m)
      assert.match(await dialog.login(member.username, member.password), /^235 /)
    } finally {
      dialog.close()
    }
  })

  it('1,000 trickling connections from one address: it keeps 10, every other address is served at once', async () => {
    // In batches, so that the listen backlog never overflows into SYN retries.
    const attackers: ReturnType<typeof rawClient>[] = []
    for (let i = 0; i < 5; i++) {
      const batch = Array.from({ length: 200 }, () => rawClient(h.port, '127.0.0.2'))
      await Promise.all(
        batch.map((a) => new Promise((resolve) => a.socket.once('connect', resolve).once('close', resolve))),
      )
      attackers.push(...batch)
    }
    // A byte now and then: enough to keep an idle timeout from ever firing.
    const trickle = setInterval(() => {
      for (const a of attackers) if (!a.socket.destroyed) a.socket.write('N')
    }, 200)
    try {
      const answered = await eventually(
        async () => (attackers.every((a) => a.text().length > 0) ? attackers : undefined),
        20_000,
        'every attacker connection answered',
      )
      const refused = answered.filter((a) => a.text().startsWith('421 '))
      const held = answered.filter((a) => a.text().startsWith('220 '))
      assert.equal(held.length, 10)
      assert.equal(refused.length, 990)
      assert.equal(refused[0]!.text(), '421 4.7.0 Too many connections from 127.0.0.2; try again later\r\n')
      await Promise.all(refused.map((a) => a.closed))
      assert.equal(h.submission.connectionsFrom('127.0.0.2'), 10)

      // The member, from another address, while the ten stay.
      const info = await submitRaw(
        h.port,
        member,
        { from: 'a@edge.example', to: ['x@dest.example'] },
        message('edge.example'),
      )
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as /)
      assert.ok(held.every((a) => !a.socket.destroyed))
      assert.ok(h.submission.metrics.refused.value({ reason: 'address_connections' }) >= 990)
    } finally {
      clearInterval(trickle)
      for (const a of attackers) a.socket.destroy()
    }
    await eventually(async () => (h.submission.connectionsFrom('127.0.0.2') === 0 ? true : undefined))
  })

  it("frees the member's connection slot of a client that left while its login was checked", async () => {
    const erin = await createMember(h, 'erin-edge.example')
    // The logins wait on a lock of the credentials table, as on a slow database.
    const lock = await h.sql.reserve()
    try {
      await lock`begin`
      await lock`lock table smtp_credentials in access exclusive mode`
      const leaving = await Promise.all(
        Array.from({ length: 3 }, async () => {
          const { dialog } = await SmtpDialog.open(h.port)
          await dialog.send('EHLO c.example')
          await dialog.starttls()
          await dialog.send('EHLO c.example')
          void dialog.login(erin.username, erin.password)
          return dialog
        }),
      )
      await eventually(async () => {
        const [row] = await h.sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and query like '%smtp_credentials%'`
        return (row?.n ?? 0) >= 3 ? true : undefined
      })
      for (const d of leaving) d.close()
      await eventually(async () => (h.submission.connectionsFrom('127.0.0.1') === 0 ? true : undefined))
    } finally {
      await lock`commit`.catch(() => {})
      lock.release()
    }
    // All three slots are free again: three connections of erin log in.
    await eventually(async () => {
      const conns = await Promise.all([loggedIn(h.port, erin), loggedIn(h.port, erin), loggedIn(h.port, erin)])
      for (const c of conns) c.dialog.close()
      return conns.every((c) => c.auth.startsWith('235')) ? true : undefined
    })
  })
})

describe('submission edge, deadlines', () => {
  let h: Harness
  let member: AddedMember

  before(async () => {
    h = await startSubmission()
    member = await createMember(h, 'deadline.example')
  })
  after(async () => {
    await h?.close()
  })

  /**
   * Another submission server on the same database and Redis with one deadline made short,
   * so that no other step of a test (a TLS handshake, a scrypt on a busy machine) races it.
   */
  async function withServer(extra: Record<string, string>, fn: (s: Submission) => Promise<void>): Promise<void> {
    const ctx = relayContext({ ...h.env, ...extra, ATMOS_RELAY_SUBMISSION_PORT: '0' })
    const server = new Submission(ctx)
    await server.start()
    try {
      await fn(server)
    } finally {
      await server.stop()
      await closeBaseContext(ctx)
    }
  }

  it('closes a connection that has not logged in by the deadline, however it trickles', { timeout: 15_000 }, () =>
    withServer({ ATMOS_RELAY_SUBMISSION_LOGIN_TIMEOUT: '1s' }, async (server) => {
      const client = rawClient(server.addresses.starttls!.port, '127.0.0.1')
      // One byte a tenth of a second: the idle timeout never fires, and no command is ever complete.
      const trickle = setInterval(() => client.socket.write('N'), 100)
      try {
        await client.closed
        assert.equal(client.text().split('\r\n')[1], '421 4.7.0 No successful login within 1 second; closing')
      } finally {
        clearInterval(trickle)
        client.socket.destroy()
      }
      assert.equal(server.metrics.refused.value({ reason: 'establish_timeout' }), 1)
    }),
  )

  it('closes a message trickled slower than the minimum data rate, and spools nothing', { timeout: 15_000 }, () =>
    withServer(
      { ATMOS_RELAY_SUBMISSION_MIN_DATA_RATE: '2000', ATMOS_RELAY_SUBMISSION_DATA_RATE_WINDOW: '500ms' },
      async (server) => {
        const port = server.addresses.starttls!.port
        const before = (await spooled(h.sql)).length
        const { dialog, auth } = await loggedIn(port, member)
        try {
          assert.match(auth, /^235 /)
          assert.match(await dialog.send('MAIL FROM:<a@deadline.example>'), /^250 /)
          assert.match(await dialog.send('RCPT TO:<x@dest.example>'), /^250 /)
          assert.match(await dialog.send('DATA'), /^354 /)
          const reply = dialog.send('From: a@deadline.example')
          const trickle = setInterval(() => dialog.write('x\r\n'), 100)
          try {
            assert.equal(await reply, '421 4.7.0 Message data slower than 2000 bytes a second; closing')
          } finally {
            clearInterval(trickle)
          }
        } finally {
          dialog.close()
        }
        assert.equal((await spooled(h.sql)).length, before)
        // A client that keeps up is not touched.
        const info = await submitRaw(
          port,
          member,
          { from: 'a@deadline.example', to: ['x@dest.example'] },
          message('deadline.example'),
        )
        assert.match(info.response, /^250 /)
      },
    ),
  )

  it('ends a session at its maximum length, however busy', { timeout: 15_000 }, () =>
    withServer({ ATMOS_RELAY_SUBMISSION_MAX_SESSION_LENGTH: '3s' }, async (server) => {
      const { dialog, auth } = await loggedIn(server.addresses.starttls!.port, member)
      try {
        // Busy from the login on: commands until the server ends the session.
        const last = auth.startsWith('421')
          ? auth
          : await eventually(async () => {
              const r = await dialog.send('NOOP')
              return r.startsWith('421') ? r : undefined
            })
        assert.equal(last, '421 4.7.0 Session longer than 3 seconds; reconnect to continue')
      } finally {
        dialog.close()
      }
    }),
  )
})
