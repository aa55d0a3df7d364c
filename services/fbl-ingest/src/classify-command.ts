// What `fbl-ingest classify` does once its arguments are settled. src/cli.ts imports this
// module only when the command runs, so that help and usage errors load the parser alone.
import { readFileSync } from 'node:fs'
import { loadConfig, poolSection } from '@atmos/config'
import { type Classification, type ClassifyOptions, classifyMessage } from '@atmos/mail-feedback'
import { z } from 'zod'

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

/** `classify FILE...`: one JSON line per recipient of each file; exit 66 when a file could not be read. */
export async function classify(files: string[]): Promise<number> {
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
