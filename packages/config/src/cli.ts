// The one argument parser of the operator commands (relay, labeler, scheduler, fbl-ingest, webhooks,
// admin), so that they all read arguments and answer help and mistakes the same way:
//   - `prog --help`, `prog -h`, `prog help`: every command's synopsis on stdout, exit 0;
//     `prog help <command>` and `prog <command> --help`: that command's full help.
//   - the subject of a command is a positional argument (`reinstate <did>`), options are
//     `--name value`; an unknown command or option, a missing or extra argument: the message
//     and the usage on stderr, exit 64 (EX_USAGE).
//   - a bad configuration exits 2 naming the field, as the services do.
// A CLI imports it as `@atmos/config/cli`, which loads this parser alone (no zod, no config
// loader), and declares each command's usage statically with a `run` that imports the
// command's work: help and usage errors then cost a Node start and this file, not a service.
import { type ParseArgsConfig, parseArgs } from 'node:util'
import { ConfigError } from './config-error.ts'

export { parseDuration } from './duration.ts'

export const EX_USAGE = 64
export const EX_CONFIG = 2

/** The command was used wrongly: the message and its usage go to stderr, exit 64. */
export class UsageError extends Error {}

/** Help was asked for: the text goes to stdout, exit 0. */
class HelpRequested extends Error {}

export type OptionSpec = {
  type: 'string' | 'boolean'
  multiple?: boolean
  short?: string
  /** The value's placeholder in the help, e.g. `REASON`. */
  value?: string
  /** What the option means. */
  help: string
}

export type ArgSpec = { name: string; help: string }

type Options = Record<string, OptionSpec>

/** Parsed option values: strings, booleans, or lists for `multiple`. */
export type Values<O extends Options> = {
  [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : O[K] extends { multiple: true } ? string[] : string
}

export type Parsed<O extends Options> = { values: Values<O>; positionals: string[] }

export type Command<O extends Options = Options> = {
  /** The synopsis after the command's name, e.g. `<did|domain> --reason REASON`. */
  usage: string
  /** What it does, a few lines. */
  help: string
  /** The positional arguments, in order, with what each means. */
  args?: ArgSpec[]
  /** Fewest and most positional arguments (default: none / as many as `args`). */
  min?: number
  max?: number
  options?: O
  run: (parsed: Parsed<O>, ctx: CommandContext) => Promise<number> | number
}

/** What a running command knows of how it was called. */
export type CommandContext = {
  /** `relay members reinstate`: for messages. */
  name: string
  /** Says on stderr that an old form still works but is going away. */
  deprecated: (message: string) => void
}

/** A command, or a group of commands (`relay members ...`). */
/**
 * Any command, whatever its options: `run` takes `never` so that every command's own `run`
 * fits; runCli calls it with what parseCommand produced from that command's options.
 */
type AnyCommand = Omit<Command, 'run'> & { run: (parsed: never, ctx: CommandContext) => Promise<number> | number }

export type CommandTree = { [name: string]: AnyCommand | CommandTree }

/** Declares a command, inferring its option types. */
export function command<O extends Options = Record<never, OptionSpec>>(c: Command<O>): Command<O> {
  return c
}

function isCommand(node: AnyCommand | CommandTree): node is AnyCommand {
  return typeof (node as AnyCommand).run === 'function'
}

const HELP_WORDS = new Set(['--help', '-h', 'help'])

/** One line per command under `tree`, with its full name. */
function synopses(prefix: string, tree: CommandTree): string[] {
  return Object.entries(tree).flatMap(([name, node]) =>
    isCommand(node)
      ? [`  ${prefix} ${name}${node.usage ? ` ${node.usage}` : ''}`]
      : synopses(`${prefix} ${name}`, node),
  )
}

function groupUsage(prefix: string, tree: CommandTree): string {
  const top = prefix.includes(' ') ? '' : `\n\n${prefix} help <command> (or <command> --help) says more of each`
  return `usage:\n${synopses(prefix, tree).join('\n')}${top}`
}

function commandUsage(name: string, c: AnyCommand): string {
  return `usage: ${name}${c.usage ? ` ${c.usage}` : ''}`
}

function commandHelp(name: string, c: AnyCommand): string {
  const lines = [commandUsage(name, c), '', c.help]
  if (c.args?.length) {
    lines.push('', 'arguments:')
    const width = Math.max(...c.args.map((a) => a.name.length))
    for (const a of c.args) lines.push(`  ${a.name.padEnd(width)}  ${a.help}`)
  }
  const opts = Object.entries((c.options ?? {}) as Options).map(([n, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${n}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`
    return [flag, `${o.help}${o.multiple ? ' (may be repeated)' : ''}`] as const
  })
  opts.push(['-h, --help', 'show this help'])
  const width = Math.max(...opts.map(([f]) => f.length))
  lines.push('', 'options:', ...opts.map(([f, h]) => `  ${f.padEnd(width)}  ${h}`))
  return lines.join('\n')
}

/** Strict parse of one command's arguments; `--help` anywhere before `--` asks for its help. */
function parseCommand(name: string, c: AnyCommand, args: string[]): Parsed<Options> {
  const end = args.indexOf('--')
  const before = end < 0 ? args : args.slice(0, end)
  if (before.includes('--help') || before.includes('-h')) throw new HelpRequested(commandHelp(name, c))
  const options: NonNullable<ParseArgsConfig['options']> = {}
  for (const [n, o] of Object.entries((c.options ?? {}) as Options)) {
    options[n] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) }
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] }
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true })
  } catch (err) {
    // Node's messages are precise ("Unknown option '--x'"), only too long-winded on positionals.
    throw new UsageError((err as Error).message.split('. To specify')[0]!)
  }
  const max = c.max ?? c.args?.length ?? 0
  const min = c.min ?? 0
  if (parsed.positionals.length > max) throw new UsageError(`unexpected argument ${parsed.positionals[max]}`)
  if (parsed.positionals.length < min) {
    const missing = c.args?.slice(parsed.positionals.length, min).map((a) => a.name)
    throw new UsageError(`missing ${missing?.join(' ') || 'argument'}`)
  }
  return parsed as Parsed<Options>
}

type Resolved = { name: string; command: AnyCommand; args: string[] } | { help: string } | { usage: UsageError }

/** Walks argv down the tree to a command, a help request, or a usage error with the usage that fits. */
function resolve(prog: string, tree: CommandTree, argv: string[]): Resolved {
  let node: AnyCommand | CommandTree = tree
  let name = prog
  let i = 0
  // `help a b` is `a b --help`.
  const asked = argv[0] === 'help'
  const words = asked ? argv.slice(1) : argv
  for (; ; i++) {
    if (isCommand(node)) {
      if (asked) return { help: commandHelp(name, node) }
      return { name, command: node, args: words.slice(i) }
    }
    const word = words[i]
    if (word === undefined || HELP_WORDS.has(word)) {
      const usage = groupUsage(name, node)
      if (word !== undefined || asked) return { help: usage }
      const e = new UsageError(
        name === prog ? 'a command is required' : `${name.slice(prog.length + 1)} needs a command`,
      )
      return { usage: Object.assign(e, { usage }) }
    }
    const next: AnyCommand | CommandTree | undefined = Object.hasOwn(node, word) ? node[word] : undefined
    if (!next) {
      const what = word.startsWith('-')
        ? `unknown option ${word}`
        : `unknown command ${`${name} ${word}`.slice(prog.length + 1)}`
      return { usage: Object.assign(new UsageError(what), { usage: groupUsage(name, node) }) }
    }
    node = next
    name = `${name} ${word}`
  }
}

export type RunOptions = {
  /** Exit code and line for errors the CLI knows (e.g. an unreadable key); default: 1 and the message. */
  onError?: (err: unknown) => number | undefined
}

/**
 * Runs the command argv names and returns the exit code. Help and usage errors are answered
 * before the command runs, so they need neither configuration nor a database.
 */
export async function runCli(prog: string, tree: CommandTree, argv: string[], opts: RunOptions = {}): Promise<number> {
  const found = resolve(prog, tree, argv)
  if ('help' in found) {
    process.stdout.write(`${found.help}\n`)
    return 0
  }
  if ('usage' in found) {
    process.stderr.write(`${prog}: ${found.usage.message}\n${(found.usage as UsageError & { usage: string }).usage}\n`)
    return EX_USAGE
  }
  const { name, command: c, args } = found
  try {
    const parsed = parseCommand(name, c, args)
    const ctx: CommandContext = {
      name,
      deprecated: (message) => process.stderr.write(`${name}: deprecated: ${message}\n`),
    }
    return await (c.run as Command['run'])(parsed, ctx)
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.message}\n`)
      return 0
    }
    if (err instanceof UsageError) {
      process.stderr.write(`${name}: ${err.message}\n${commandUsage(name, c)}\n`)
      return EX_USAGE
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`)
      return EX_CONFIG
    }
    const code = opts.onError?.(err)
    if (code !== undefined) return code
    process.stderr.write(`${name}: ${(err as Error).message}\n`)
    return 1
  }
}

/**
 * The command's subject: its positional argument, or (the old form) the value of `--flag`,
 * which still works with a deprecation line on stderr. Both at once is a usage error.
 */
export function subject(
  ctx: CommandContext,
  positional: string | undefined,
  flags: Record<string, string | undefined>,
  argName: string,
): string | undefined {
  const given = Object.entries(flags).filter(([, v]) => v !== undefined)
  if (given.length > 1) throw new UsageError(`give ${argName} once, not ${given.map(([f]) => `--${f}`).join(' and ')}`)
  const [flag] = given
  if (!flag) return positional
  if (positional !== undefined) throw new UsageError(`give ${argName} once: as an argument or --${flag[0]}, not both`)
  ctx.deprecated(`--${flag[0]} ${flag[1]}: give ${argName} as an argument instead (${ctx.name} ${flag[1]} ...)`)
  return flag[1]
}
