// Walks every operator command of every service's CLI: each answers --help (and -h and
// `help <command>`, checked once a CLI) with its usage on stdout (exit 0), and an unknown option with the usage on
// stderr (exit 64). The commands are read from each CLI's own top-level help, so a command
// added later is walked too.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

type Result = { code: number; out: string; err: string }

/** Runs a CLI with no configuration at all: help and usage must not need any. */
function run(cli: string, args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH ?? '' } }, (err, out, errOut) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out, err: errOut })
    })
  })
}

const CLIS = ['relay', 'labeler', 'scheduler', 'fbl-ingest', 'admin'].map((prog) => ({
  prog,
  path: fileURLToPath(new URL(`../../../services/${prog}/src/cli.ts`, import.meta.url)),
}))

/** The command words of each synopsis line of a top-level help, e.g. ['members', 'add']. */
function commandsOf(prog: string, help: string): string[][] {
  return help
    .split('\n')
    .filter((l) => l.startsWith(`  ${prog} `))
    .map((l) => {
      const words = l.trim().split(' ').slice(1)
      const end = words.findIndex((w) => !/^[a-z][a-z-]*$/.test(w))
      return end < 0 ? words : words.slice(0, end)
    })
}

describe('every CLI command answers --help', () => {
  for (const { prog, path } of CLIS) {
    it(`${prog}: each command's help, and a usage error for an unknown option or command`, async () => {
      const top = await run(path, ['--help'])
      assert.equal(top.code, 0, top.err)
      assert.equal(top.err, '')
      assert.match(top.out, /^usage:\n/)
      assert.deepEqual(await run(path, ['-h']), top)
      assert.deepEqual(await run(path, ['help']), top)
      const commands = commandsOf(prog, top.out)
      assert.ok(commands.length > 0, top.out)
      // Each spawn loads a whole CLI (seconds on a busy machine): `help <command>` is the same
      // code path for every command, so one command checks it; each group is checked once.
      const groups = new Set<string>()
      for (const [i, words] of commands.entries()) {
        const name = `${prog} ${words.join(' ')}`
        const help = await run(path, [...words, '--help'])
        assert.equal(help.code, 0, `${name} --help: ${help.err}`)
        assert.ok(help.out.startsWith(`usage: ${name}`), help.out)
        // What the command does, then what each option means.
        assert.match(help.out, /\n\n\S[\s\S]*\n\noptions:\n[\s\S]*-h, --help +show this help\n$/)
        if (i === 0) assert.deepEqual(await run(path, ['help', ...words]), help, `help ${name}`)
        const bad = await run(path, [...words, '--no-such-option'])
        assert.equal(bad.code, 64, `${name} --no-such-option`)
        assert.equal(bad.out, '')
        assert.match(bad.err, /Unknown option '--no-such-option'/)
        assert.ok(bad.err.includes(`usage: ${name}`), bad.err)
        if (words.length > 1 && !groups.has(words[0]!)) {
          groups.add(words[0]!)
          const group = await run(path, [words[0]!, '--help'])
          assert.equal(group.code, 0)
          const members = commands.filter((w) => w[0] === words[0]).map((w) => `  ${prog} ${w.join(' ')}`)
          for (const m of members) assert.ok(group.out.includes(m), `${m} in ${group.out}`)
          const bare = await run(path, [words[0]!])
          assert.equal(bare.code, 64)
          assert.match(bare.err, new RegExp(`^${prog}: ${words[0]} needs a command\nusage:`))
        }
      }
      for (const args of [[], ['no-such-command'], ['--no-such-option'], ['help', 'no-such-command']]) {
        const res = await run(path, args)
        assert.equal(res.code, 64, `${prog} ${args.join(' ')}`)
        assert.equal(res.out, '')
        assert.match(res.err, /\nusage:\n/)
      }
    })
  }
})
