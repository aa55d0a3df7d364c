// Operator commands (`node services/fbl-ingest/src/cli.ts <command>`):
//
//   classify FILE...   read each file as one inbound message and print, per recipient, one
//                      JSON line: what the message is (arf, dsn, plain_bounce, auto_reply,
//                      other, unparseable), address, action, status, reply code, reason
//                      class, hard or soft, the feedback type of a complaint, and the
//                      attribution hints. Nothing is stored. Exit 0 when every file was
//                      read, 66 when one could not be, 64 on bad usage.
//
//   aggregate | suppressions | reinstate   feedback and reputation commands (src/ops-cli.ts)
//
// The pool identity (VERP domain and prefix, Feedback-ID sender id, token secret) comes
// from the usual config: `fblIngest.pool.*` in $ATMOS_CONFIG or ATMOS_FBL_INGEST_POOL_*.
// Without the secret file, tokens cannot be verified: the command says so on stderr and
// prints the other hints.
import { readFileSync } from 'node:fs'
import { ConfigError, loadConfig, poolSection } from '@atmos/config'
import { type Classification, type ClassifyOptions, classifyMessage } from '@atmos/mail-feedback'
import { z } from 'zod'
import { OPS_USAGE, main as opsMain } from './ops-cli.ts'

const EX_USAGE = 64
const EX_NOINPUT = 66

class UsageError extends Error {}

const cliConfigSchema = z.object({
  fblIngest: z.object({ pool: poolSection }).prefault({}),
})

function classifyOptions(): ClassifyOptions {
  const { pool } = loadConfig(cliConfigSchema).fblIngest
  const opts: ClassifyOptions = { feedbackSenderId: pool.feedbackSenderId, poolDomain: pool.domain }
  let secret = ''
  try {
    secret = readFileSync(pool.tokenSecretFile, 'utf8').trim()
  } catch (err) {
    console.error(
      `fbl-ingest classify: token secret ${pool.tokenSecretFile} unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'}); VERP and X-Atmos-Ref tokens are not verified`,
    )
  }
  if (secret) opts.verp = { secret, bounceDomain: pool.bounceDomain, prefix: pool.verpPrefix }
  return opts
}

/** One line per recipient; a message without recipients (not a report, unreadable) still gets one. */
function classificationLines(file: string, c: Classification): Record<string, unknown>[] {
  const report = c.kind !== 'other' && c.kind !== 'unparseable'
  const tail = {
    ...(c.feedback ? { feedbackType: c.feedback.feedbackType } : {}),
    attribution: c.attribution,
    ...(c.notes.length ? { notes: c.notes } : {}),
  }
  if (!c.recipients.length) return [{ file, kind: c.kind, report, ...tail }]
  return c.recipients.map((r) => ({
    file,
    kind: c.kind,
    report,
    address: r.address,
    action: r.action,
    status: r.status,
    replyCode: r.replyCode,
    reason: r.reason,
    hard: r.hard,
    remoteMta: r.remoteMta,
    diagnostic: r.diagnostic,
    ...tail,
  }))
}

async function classify(files: string[]): Promise<number> {
  if (!files.length) throw new UsageError('usage: fbl-ingest classify FILE...')
  const opts = classifyOptions()
  let code = 0
  for (const file of files) {
    let raw: Buffer
    try {
      raw = readFileSync(file)
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      console.error(`fbl-ingest classify: cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`)
      code = EX_NOINPUT
      continue
    }
    const c = await classifyMessage(raw, opts)
    for (const line of classificationLines(file, c)) console.log(JSON.stringify(line))
  }
  return code
}

// Feedback and reputation commands (aggregate, suppressions, reinstate) live in ops-cli.ts.
const OPS_COMMANDS = new Set(['aggregate', 'suppressions', 'reinstate'])
const USAGE = `usage: fbl-ingest classify FILE...\n${OPS_USAGE.replace(/^usage:\n/, '')}`
const [command, ...rest] = process.argv.slice(2)
if (command === '--help' || command === '-h' || command === 'help') {
  console.log(USAGE)
  process.exit(0)
}
try {
  const code =
    command === 'classify'
      ? await classify(rest)
      : command && OPS_COMMANDS.has(command)
        ? await opsMain([command, ...rest])
        : (() => {
            throw new UsageError(USAGE)
          })()
  process.exit(code)
} catch (err) {
  console.error(`fbl-ingest ${command ?? ''}: ${(err as Error).message}`)
  process.exit(err instanceof UsageError ? EX_USAGE : err instanceof ConfigError ? 2 : 1)
}
