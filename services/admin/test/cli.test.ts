// `admin oauth init | rotate` run as the operator runs them: a process, its exit code and output.
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '@atmos/testkit'

const cli = new URL('../src/cli.ts', import.meta.url)

describe('admin CLI', () => {
  it('oauth init creates both key files once; rotate adds a signing key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atmos-admin-cli-'))
    const env = { ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'), ATMOS_ADMIN_OAUTH_KEYS_FILE: join(dir, 'keys.json') }
    const first = await runCli(cli, ['oauth', 'init'], env)
    assert.equal(first.code, 0, first.err)
    assert.match(first.out, /created .*kek \(mode 0600\)\ncreated .*keys\.json \(mode 0600\)\n$/)
    assert.equal(statSync(env.ATMOS_ADMIN_KEK_FILE).mode & 0o777, 0o600)
    const again = await runCli(cli, ['oauth', 'init'], env)
    assert.equal(again.code, 0, again.err)
    assert.match(again.out, /kek already exists\n.*keys\.json already exists\n$/)
    const before = readFileSync(env.ATMOS_ADMIN_OAUTH_KEYS_FILE, 'utf8')
    const rotated = await runCli(cli, ['oauth', 'rotate'], env)
    assert.equal(rotated.code, 0, rotated.err)
    assert.match(rotated.out, /^added signing key \S+ to .*keys\.json/)
    assert.notEqual(readFileSync(env.ATMOS_ADMIN_OAUTH_KEYS_FILE, 'utf8'), before)
  })

  it('answers a usage error with the usage on stderr and exit 64, a bad configuration with exit 2', async () => {
    const extra = await runCli(cli, ['oauth', 'init', 'now'], {})
    assert.equal(extra.code, 64)
    assert.equal(extra.out, '')
    assert.equal(extra.err, 'admin oauth init: unexpected argument now\nusage: admin oauth init\n')
    const bare = await runCli(cli, ['oauth'], {})
    assert.equal(bare.code, 64)
    assert.match(bare.err, /^admin: oauth needs a command\nusage:\n {2}admin oauth init\n {2}admin oauth rotate\n/)
    const help = await runCli(cli, ['help', 'oauth', 'rotate'], {})
    assert.equal(help.code, 0, help.err)
    assert.match(help.out, /^usage: admin oauth rotate\n\nAdds a newer signing key/)
    const config = await runCli(cli, ['oauth', 'rotate'], { ATMOS_HTTP_PORT: 'nope' })
    assert.equal(config.code, 2)
    assert.match(config.err, /^admin oauth rotate: invalid configuration:\n {2}http\.port \(from ATMOS_HTTP_PORT\)/)
  })
})
