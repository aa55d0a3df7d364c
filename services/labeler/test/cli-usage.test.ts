// The labeler's commands as a process, for what they answer before reading keys or the
// database: help, usage errors (64), a bad configuration (2). cli.test.ts runs them for real.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { runCli } from '@atmos/testkit'

const cli = new URL('../src/cli.ts', import.meta.url)

describe('labeler CLI usage', () => {
  it('explains verify and refuses its misuse with exit 64', async () => {
    const help = await runCli(cli, ['help', 'verify'], {})
    assert.equal(help.code, 0, help.err)
    assert.match(help.out, /^usage: labeler verify <did-or-domain>/)
    assert.match(help.out, /\narguments:\n {2}<did-or-domain> +a DID/)
    assert.match(help.out, /--selector SEL +a DKIM selector to check \(with --did\) \(may be repeated\)/)
    for (const [args, message] of [
      [['verify'], /^labeler verify: missing <did-or-domain>\n/],
      [['verify', 'a.example', '--did', 'did:plc:x'], /--did needs at least one --selector/],
      [['verify', 'a.example', '--selector', 's1'], /--selector needs --did/],
      [['verify', 'a.example', 'b.example'], /unexpected argument b\.example/],
      [['declare', '--publish=yes'], /--publish/],
      [['init', '--force'], /Unknown option '--force'/],
    ] as const) {
      const res = await runCli(cli, [...args], {})
      assert.equal(res.code, 64, `${args.join(' ')}: ${res.err}`)
      assert.equal(res.out, '')
      assert.match(res.err, message)
      assert.match(res.err, new RegExp(`\nusage: labeler ${args[0]}`))
    }
  })

  it('reports a bad configuration with exit 2, naming the field', async () => {
    const res = await runCli(cli, ['init'], { ATMOS_HTTP_PORT: 'nope' })
    assert.equal(res.code, 2)
    assert.match(res.err, /^labeler init: invalid configuration:\n {2}http\.port \(from ATMOS_HTTP_PORT\)/)
  })
})
