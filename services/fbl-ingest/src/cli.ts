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
// `fbl-ingest --help` lists every command, `fbl-ingest help <command>` explains one.
//
// The pool identity (VERP domain and prefix, Feedback-ID sender id, token secret) comes
// from the usual config: `fblIngest.pool.*` in $ATMOS_CONFIG or ATMOS_FBL_INGEST_POOL_*.
// Without the secret file, tokens cannot be verified: the command says so on stderr and
// prints the other hints.
import { readFileSync } from 'node:fs'
import { command, loadConfig, poolSection, runCli } from '@atmos/config'
import { type Classification, type ClassifyOptions, classifyMessage } from '@atmos/mail-feedback'
import { z } from 'zod'
import { OPS_COMMANDS } from './ops-cli.ts'

const EX_NOINPUT = 66

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

const classifyCommand = command({
  usage: 'FILE...',
  help:
    'Reads each file as one inbound message and prints, per recipient, one JSON line: what the message\n' +
    'is (arf, dsn, plain_bounce, auto_reply, other, unparseable), address, action, status, reply code,\n' +
    'reason class, hard or soft, the feedback type of a complaint, and the attribution hints. Nothing is\n' +
    'stored. Exit 66 when a file could not be read.',
  args: [{ name: 'FILE...', help: 'a message as received (RFC 5322), one per file' }],
  min: 1,
  max: Number.POSITIVE_INFINITY,
  run: ({ positionals }) => classify(positionals),
})

process.exit(await runCli('fbl-ingest', { classify: classifyCommand, ...OPS_COMMANDS }, process.argv.slice(2)))
