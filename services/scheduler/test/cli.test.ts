// `scheduler run-once` as a process: what it answers before it touches the database or Redis.
// (run-once.test.ts runs it against a labeler.)
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { runCli } from '@atmos/testkit'

const cli = new URL('../src/cli.ts', import.meta.url)

describe('scheduler CLI', () => {
  it('answers help, usage errors (64) and a bad configuration (2) before connecting to anything', async () => {
    const help = await runCli(cli, ['run-once', '--help'], {})
    assert.equal(help.code, 0, help.err)
    assert.match(help.out, /^usage: scheduler run-once \[--timeout 10m\]\n/)
    assert.match(help.out, /--timeout DURATION +how long to wait/)
    const timeout = await runCli(cli, ['run-once', '--timeout', 'soon'], {})
    assert.equal(timeout.code, 64)
    assert.match(
      timeout.err,
      /^scheduler run-once: --timeout: expected a duration such as "30s" or "10m", got "soon"\n/,
    )
    assert.match(timeout.err, /usage: scheduler run-once/)
    const extra = await runCli(cli, ['run-once', 'all'], {})
    assert.equal(extra.code, 64)
    assert.match(extra.err, /unexpected argument all/)
    const unknown = await runCli(cli, ['run-twice'], {})
    assert.equal(unknown.code, 64)
    assert.match(unknown.err, /^scheduler: unknown command run-twice\nusage:\n {2}scheduler run-once/)
    const config = await runCli(cli, ['run-once'], { ATMOS_HTTP_PORT: 'nope' })
    assert.equal(config.code, 2)
    assert.match(config.err, /http\.port \(from ATMOS_HTTP_PORT\)/)
  })
})
