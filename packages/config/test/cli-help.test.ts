// Walks every operator command of every service's CLI: each answers --help, -h and
// `help <command>` with its usage on stdout (exit 0), and an unknown option with the usage on
// stderr (exit 64); each group lists its commands. The commands are read from each CLI's own
// top-level help, so a command added later is walked too. Help and usage load the argument
// parser and the command tables only, never the service (which takes seconds to load): that is
// what keeps this walk cheap, and it is checked here too.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

type Result = { code: number; out: string; err: string }

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const LOAD_TRACE = fileURLToPath(new URL('./load-trace.ts', import.meta.url))
const traces = mkdtempSync(join(tmpdir(), 'atmos-cli-help-'))
after(() => rmSync(traces, { recursive: true, force: true }))

/** Runs a CLI with no configuration at all: help and usage must not need any. */
function run(cli: string, args: string[], traceFile?: string): Promise<Result> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' }
  const node = [cli, ...args]
  if (traceFile) {
    env.ATMOS_TEST_LOAD_TRACE = traceFile
    node.unshift('--import', LOAD_TRACE)
  }
  return new Promise((resolve) => {
    execFile(process.execPath, node, { env }, (err, out, errOut) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out, err: errOut })
    })
  })
}

/** The workspace files and packages a CLI run loaded, relative to the repository. */
async function loaded(cli: string, args: string[], name: string): Promise<{ res: Result; files: string[] }> {
  const file = join(traces, `${name.replace(/[^a-z0-9-]+/gi, '_')}.txt`)
  const res = await run(cli, args, file)
  const files = readFileSync(file, 'utf8')
    .split('\n')
    .filter((u) => u.startsWith('file:'))
    .map((u) => fileURLToPath(u).slice(ROOT.length))
  return { res, files }
}

const CLIS = ['relay', 'labeler', 'scheduler', 'fbl-ingest', 'admin', 'webhooks'].map((prog) => ({
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

/** One command: its help three ways, and an unknown option refused with its usage. */
async function checkCommand(prog: string, path: string, words: string[]) {
  const name = `${prog} ${words.join(' ')}`
  const help = await run(path, [...words, '--help'])
  assert.equal(help.code, 0, `${name} --help: ${help.err}`)
  assert.equal(help.err, '', `${name} --help`)
  assert.ok(help.out.startsWith(`usage: ${name}`), help.out)
  // What the command does, then what each option means.
  assert.match(help.out, /\n\n\S[\s\S]*\n\noptions:\n[\s\S]*-h, --help +show this help\n$/)
  assert.deepEqual(await run(path, ['help', ...words]), help, `help ${name}`)
  assert.deepEqual(await run(path, [...words, '-h']), help, `${name} -h`)
  const bad = await run(path, [...words, '--no-such-option'])
  assert.equal(bad.code, 64, `${name} --no-such-option`)
  assert.equal(bad.out, '')
  assert.match(bad.err, /Unknown option '--no-such-option'/)
  assert.ok(bad.err.includes(`usage: ${name}`), bad.err)
}

/** A group (`relay members`): its help lists its commands; without a command it is a usage error. */
async function checkGroup(prog: string, path: string, group: string, commands: string[][]) {
  const help = await run(path, [group, '--help'])
  assert.equal(help.code, 0, help.err)
  const members = commands.filter((w) => w[0] === group).map((w) => `  ${prog} ${w.join(' ')}`)
  for (const m of members) assert.ok(help.out.includes(m), `${m} in ${help.out}`)
  const bare = await run(path, [group])
  assert.equal(bare.code, 64)
  assert.match(bare.err, new RegExp(`^${prog}: ${group} needs a command\nusage:`))
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
      const groups = [...new Set(commands.filter((w) => w.length > 1).map((w) => w[0]!))]
      // Independent processes: a CLI's commands are walked side by side.
      await Promise.all([
        ...commands.map((words) => checkCommand(prog, path, words)),
        ...groups.map((group) => checkGroup(prog, path, group, commands)),
      ])
      for (const args of [[], ['no-such-command'], ['--no-such-option'], ['help', 'no-such-command']]) {
        const res = await run(path, args)
        assert.equal(res.code, 64, `${prog} ${args.join(' ')}`)
        assert.equal(res.out, '')
        assert.match(res.err, /\nusage:\n/)
      }
    })
  }
})

describe('help and usage errors load the parser and the command tables, not the service', () => {
  for (const { prog, path } of CLIS) {
    it(`${prog}`, async () => {
      const top = await run(path, ['--help'])
      const [first] = commandsOf(prog, top.out)
      assert.ok(first, top.out)
      for (const args of [['--help'], [...first, '--help'], [...first, '--no-such-option'], ['no-such-command']]) {
        const { res, files } = await loaded(path, args, `${prog} ${args.join(' ')}`)
        assert.ok(res.code === 0 || res.code === 64, `${prog} ${args.join(' ')}: ${res.err}`)
        // The parser (packages/config/src/cli.ts and the two small modules it needs), and the
        // CLI's own command tables (src/cli.ts, src/ops-cli.ts): nothing of node_modules.
        const others = files.filter(
          (f) =>
            !/^packages\/config\/src\/(cli|config-error|duration)\.ts$/.test(f) &&
            !f.startsWith(`services/${prog}/src/`) &&
            f !== LOAD_TRACE.slice(ROOT.length),
        )
        assert.deepEqual(others, [], `${prog} ${args.join(' ')} loaded more than the parser`)
        const own = files.filter((f) => f.startsWith(`services/${prog}/src/`))
        for (const f of own) assert.match(f, /(^|[/-])cli\.ts$/, `${prog} ${args.join(' ')} loaded ${f}`)
      }
    })
  }
})
